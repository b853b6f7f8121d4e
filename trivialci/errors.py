"""Errors for people.

Library code raises a TrivialCiError whose message says what was wrong and what
to do; only the CLI turns it into one line on stderr and an exit status. The
exit statuses are part of the protocol (docs/protocol.md, "Exit statuses").
"""


class TrivialCiError(Exception):
    """Something a person can act on; `exit_code` is what the CLI exits with."""

    exit_code = 1


class BadInput(TrivialCiError):
    """A payload, event type, name or argument was refused; nothing was written."""

    exit_code = 2


class NodeBusy(TrivialCiError):
    """Another live process already runs this node directory."""

    exit_code = 3


class SpoolUnavailable(TrivialCiError):
    """The spool could not be read or written (missing, full, read-only, unreachable)."""

    exit_code = 4
