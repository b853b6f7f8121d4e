"""Pausing dispatch: the switch a person flips, and what the event log says about it.

    state/PAUSE         while it exists, nothing is dispatched (a person creates or removes it)
    state/paused.json   {"reason", "since"}: dispatch is paused as far as the event log goes

A `pause` event ({"reason": TEXT}) makes paused.json and, if it is missing,
PAUSE; a `resume` event removes both. Each acts only on a change of
paused.json, so an event applied twice (live, then when the hub handles it)
never undoes what a person did in between. A PAUSE made or removed by hand is
recorded as one of these events (`notice_by_hand`) by the hub's tick and by
every dispatch before it looks at PAUSE, so that no job is handed out under a
switch the event log does not know, and a rebuild of state/ from done/ pauses
dispatch again.
"""

import os

from . import eventlog
from ..spool import files
from ..spool.atomic import remove_if_present, write_atomically

SWITCH = "PAUSE"
RECORD = "paused.json"
MAX_REASON = 200


def apply(state, event_type: str, payload: dict, at: str) -> None:
    """Fold a pause or resume event into `state`."""
    if event_type == "pause" and not is_recorded(state):
        reason = reason_of(payload.get("reason"))
        state._write(RECORD, {"reason": reason, "since": at})
        hold(state, reason)
    elif event_type == "resume" and is_recorded(state):
        remove_if_present(RECORD, root=state.root)
        remove_if_present(SWITCH, root=state.root)


def notice_by_hand(state) -> str | None:
    """Record PAUSE made or removed by hand since the log last said; a line for the log, or None if nothing changed."""
    switched, recorded = is_switched(state), is_recorded(state)
    if switched and not recorded:
        reason = reason_of(_first_line(state.root))
        eventlog.record(state, "pause", {"reason": reason, "by": "hand"})
        return f"state/PAUSE was created by hand: dispatch paused ({reason})"
    if recorded and not switched:
        eventlog.record(state, "resume", {"reason": "state/PAUSE was removed by hand", "by": "hand"})
        return "state/PAUSE was removed by hand: dispatch resumed"
    return None


def _first_line(root) -> str:
    """What a person wrote into PAUSE (read as input: no link followed, no FIFO waited on, bounded)."""
    try:
        return files.read_regular(SWITCH, 4096, root=root).decode("utf-8", "replace")
    except OSError:
        return ""


def restored(state) -> None:
    """After a checkpoint was restored: PAUSE again if it says paused."""
    if is_recorded(state):
        record = state._read(RECORD)
        hold(state, reason_of(record.get("reason") if isinstance(record, dict) else None))


def hold(state, reason: str = "paused") -> None:
    """Make PAUSE, unless it is there."""
    if not is_switched(state):
        write_atomically(SWITCH, (reason + "\n").encode(), state.staging, sync_dir=False, root=state.root)


def is_switched(state) -> bool:
    """Whether PAUSE is there (any kind of file: a person's `mkdir` pauses as well as a `touch`)."""
    return os.path.lexists(state.root / SWITCH)


def is_recorded(state) -> bool:
    return state._is_file(RECORD)


def reason_of(value) -> str:
    """A reason from an event or a person's PAUSE: its first line, printable, bounded."""
    text = value if isinstance(value, str) else ""
    line = "".join(c for c in text.strip().split("\n", 1)[0] if c.isprintable())[:MAX_REASON]
    return line or "paused"
