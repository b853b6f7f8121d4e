"""Pausing dispatch: the switch a person flips, and what the event log says about it.

    state/PAUSE         while it exists, nothing is dispatched (a person creates or removes it)
    state/paused.json   {"reason", "since"}: dispatch is paused as far as the event log goes

A `pause` event ({"reason": TEXT}) makes paused.json and, if it is missing,
PAUSE; a `resume` event removes both. Each acts only on a change of
paused.json, so an event applied twice (live, then when the hub handles it)
never undoes what a person did in between. The hub's tick records a PAUSE made
or removed by hand as one of these events (handedits.py), so that a rebuild of
state/ from done/ pauses dispatch again.
"""

from ..spool import files
from ..spool.atomic import remove_if_present, write_atomically

SWITCH = "PAUSE"
RECORD = "paused.json"
MAX_REASON = 200


def apply(state, event_type: str, payload: dict, at: str) -> None:
    """Fold a pause or resume event into `state`."""
    recorded = state.root / RECORD
    if event_type == "pause" and not recorded.exists():
        reason = reason_of(payload.get("reason"))
        state._write(recorded, {"reason": reason, "since": at})
        hold(state, reason)
    elif event_type == "resume" and recorded.exists():
        remove_if_present(recorded)
        remove_if_present(state.root / SWITCH)


def restored(state) -> None:
    """After a checkpoint was restored: PAUSE again if it says paused."""
    if (state.root / RECORD).exists():
        record = files.read_json(state.root / RECORD)
        hold(state, reason_of(record.get("reason") if isinstance(record, dict) else None))


def hold(state, reason: str = "paused") -> None:
    """Make PAUSE, unless it is there."""
    if not is_switched(state):
        write_atomically(state.root / SWITCH, (reason + "\n").encode(), state.staging, sync_dir=False)


def is_switched(state) -> bool:
    """Whether PAUSE is there (any kind of file: a person's `mkdir` pauses as well as a `touch`)."""
    return (state.root / SWITCH).is_symlink() or (state.root / SWITCH).exists()


def is_recorded(state) -> bool:
    return (state.root / RECORD).exists()


def reason_of(value) -> str:
    """A reason from an event or a person's PAUSE: its first line, printable, bounded."""
    text = value if isinstance(value, str) else ""
    line = "".join(c for c in text.strip().split("\n", 1)[0] if c.isprintable())[:MAX_REASON]
    return line or "paused"
