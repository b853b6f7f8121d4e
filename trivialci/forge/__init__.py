"""Forges (GitHub, Gitea and Forgejo, GitLab): webhooks in, commit statuses out.

In: the hub's webhook endpoint (web/webhook.py, started by `trivialci hub
--webhook`) hands each delivery to a Receiver (receive.py), which checks its
signature before anything is parsed, reduces it with the forge's module
(github.py, gitea.py, gitlab.py: one shared shape, hooks.py) to what the flow
needs, matches it to a configured repository (repos.py), and drops one event
into the hub's inbox.

Out: the hub's commit_status script queues a report (outbox.py: the newest
report of each commit and context wins), and the hub's status sender
(sender.py, a thread of `trivialci hub`) posts it with the forge's API
(statuses.py), retrying with backoff; a forge that is down never holds up the hub.

It may import the git layer (the grammars of branches and commits), the spool
layer, trivialci.jobs and trivialci.errors, and the standard library (urllib
for the APIs); never the hub, the worker, the web or the CLI. The names below
are what pipeline scripts may use (docs/scripting.md).
"""

from ..git.commands import check_repo
from . import hooks
from .hooks import Refusal, full_name
from .outbox import Outbox, check_report
from .registry import FORGES, forge_named
from .repos import known_forge
from .statuses import describe, order_of


def forge_fields(payload: dict, spool=None) -> dict:
    """{"forge", "forge_repo"} for jobs queued from an event: the event's own (it came from a webhook), checked,
    else those its repository was last heard from on `spool`; {} when neither is known."""
    if payload.get("forge") is None:
        return known_forge(spool, check_repo(payload.get("repo"))) if spool else {}
    forge_named(payload["forge"])
    return {"forge": payload["forge"], "forge_repo": full_name(payload.get("forge_repo"))}


def pull_request_fields(payload: dict) -> dict:
    """{"pr", "author", "head_repo", "fork"} of a pull_request event, each checked: the number is a positive
    integer (Refusal otherwise), names are one printable line or None, and anything but "fork": false is a fork."""
    return {"pr": hooks.number(payload.get("number")), "author": hooks.text(payload.get("author")),
            "head_repo": hooks.full_name_or_none(payload.get("head_repo")), "fork": payload.get("fork") is not False}


def queue_status(spool, report: dict) -> str:
    """Queue a commit status for the hub's sender (the newest report of a commit and context wins); a line for the
    event's log. BadInput (nothing written) for a report that breaks a grammar."""
    return Outbox(spool).queue(report)


__all__ = ["FORGES", "Refusal", "check_report", "describe", "forge_fields", "forge_named", "order_of",
           "pull_request_fields", "queue_status"]
