"""The forges TrivialCi knows, by the name in /hooks/NAME, in an event's "forge" and in a report."""

from ..errors import BadInput
from . import gitea, github, gitlab

FORGES = {module.NAME: module for module in (github, gitea, gitlab)}


def forge_named(name):
    """The module of the forge called `name`; BadInput for any other name."""
    try:
        return FORGES[name]
    except (KeyError, TypeError):
        raise BadInput(f"unknown forge {str(name)[:40]!r}: one of {', '.join(FORGES)}") from None
