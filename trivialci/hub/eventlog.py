"""The hub's event log: recording a change of its state, and replaying done/ in the order changes were applied.

A hub script applies the changes it decides at once (so that no two scripts hand
out one package) and emits each as an event to the hub, so that done/ holds it:

    record(state, TYPE, PAYLOAD)   apply now, then emit TYPE with PAYLOAD + {"_cause": EVENT_ID}

EVENT_ID is TRIVIALCI_EVENT_ID of the script's own event: STAMP-STEM, STAMP its
claim time. The recorded event is handled, and lands in done/, after that event
and after whatever waited in the inbox meanwhile (a worker's late report, say).
A rebuild must apply it where the live hub did, so each handled event has a
place:

    an event with a valid _cause    the cause's id, then its own order among the cause's changes
    any other event                 its own id (done/DAY/NAME is DAYTNAME without .json)

and the replay applies the handled events of the days it reads in that order.
A full rebuild also applies the recorded changes still in the hub's inbox/ and
work/ (applied live already, handled later), each after its cause; so a change
with a _cause is never applied when it is handled, only when recorded or rebuilt.
The time a change was applied (a worker's `since`, a pause's) is the claim time
of its place: the cause's, or its own. Live, that is the claim time of the
script's event, so a state rebuilt from done/ holds the same times.

A recorded change belongs to the day of its cause, wherever it waits: the
days a checkpoint folds (up to `through`) take the recorded changes whose cause
is of those days, also when they were handled on a later day (the hub busy or
stopped across midnight) or still wait in inbox/ or work/; a replay after the
checkpoint leaves them out. `_cause` is input like any field: one that is not
a claim id, or that is later than the event's own claim, is ignored.
"""

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from ..jobs import iso_now
from ..spool import files
from ..spool.delivery import emit

CAUSE = "_cause"
_STAMP = re.compile(r"\d{4}-\d\d-\d\dT\d{6}\.\d{6}\Z")
_ID = re.compile(r"\d{4}-\d\d-\d\dT\d{6}\.\d{6}-[a-z][a-z0-9_]*(\.[A-Za-z0-9_.-]*)?\Z")
MAX_EVENT_BYTES = 1 << 20


@dataclass(order=True)
class Handled:
    """One handled event of done/, where a rebuild applies it."""

    place: tuple
    event_type: str = field(compare=False)
    payload: dict = field(compare=False)
    at: str = field(compare=False, default="")  # when the live hub applied it


def record(state, event_type: str, payload: dict):
    """Apply a change to `state` now, then emit it to the hub naming its cause; what the fold returned."""
    cause = current_event_id()
    recorded = {**payload, CAUSE: cause} if cause else dict(payload)
    result = state.apply(event_type, recorded)
    emit(event_type, recorded, to="hub", spool=state.node_dir.spool)
    return result


def current_event_id() -> str | None:
    """The id of the hub's event whose script runs in this process, or None outside a hub script."""
    event_id = os.environ.get("TRIVIALCI_EVENT_ID", "")
    if os.environ.get("TRIVIALCI_NODE") == "hub" and _ID.match(event_id):
        return event_id
    return None


def applied_at() -> str:
    """When the hub applies a change now: the claim time of the script's event, as a rebuild will see it."""
    event_id = current_event_id()
    return iso_of_stamp(event_id[:24]) if event_id else iso_now()


def iso_of_stamp(stamp: str) -> str:
    """A claim stamp (2026-11-25T022810.612587) as the state's times are written (2026-11-25T02:28:10.612Z)."""
    day, clock = stamp[:10], stamp[11:]
    return f"{day}T{clock[:2]}:{clock[2:4]}:{clock[4:6]}.{clock[7:10]}Z"


def without_cause(payload: dict) -> dict:
    return {key: value for key, value in payload.items() if key != CAUSE}


def handled(done: Path, after: str, through: str, types: tuple) -> list[Handled]:
    """The handled events of `types` whose place is in the days after `after` up to `through`, in the order to
    apply them. A fold up to a `through` reads the later days too, for the changes recorded by then."""
    found = []
    for day in sorted(day for day in _listing(done) if day > after):
        for name in sorted(_listing(done / day)):
            event_type = _type_of(name)
            if event_type in types:
                payload = _payload(done / day / name)
                if payload is not None:
                    event = _placed(f"{day}T{name[:-len('.json')]}", event_type, payload, len(found))
                    if after < event.place[0][:10] <= through:
                        found.append(event)
    return sorted(found)


def in_flight(node_dir, types: tuple, after: str = "", through: str = "9999-12-31") -> list[Handled]:
    """The hub's recorded changes not yet handled (inbox/, work/) whose cause is of the days after `after` up to
    `through`: applied live already, so a rebuild (or a fold of those days) applies them too."""
    waiting = [(name.split(".", 1)[1], node_dir.inbox / name) for name in _listing(node_dir.inbox)
               if name.endswith(".json") and "." in name]
    claimed = [(name[25:], node_dir.work / name) for name in _listing(node_dir.work) if ".json." in name]
    found = []
    for _, path in sorted(waiting) + sorted(claimed):
        payload = _payload(path)
        stem = path.name[25:] if path.parent == node_dir.work else path.name
        cause = payload.get(CAUSE) if payload else None
        if stem.split(".", 1)[0] in types and isinstance(cause, str) and _ID.match(cause) \
                and after < cause[:10] <= through:
            found.append(Handled((cause, 1, 1 << 40 | len(found)), stem.split(".", 1)[0], payload,
                                 iso_of_stamp(cause[:24])))
    return found


def _placed(own_id: str, event_type: str, payload: dict, order: int) -> Handled:
    """Where a handled event goes: right after its cause (a change the hub recorded), or at its own id."""
    cause = payload.get(CAUSE)
    if isinstance(cause, str) and _ID.match(cause) and cause[:24] <= own_id[:24]:
        return Handled((cause, 1, order), event_type, payload, iso_of_stamp(cause[:24]))
    return Handled((own_id, 0, order), event_type, payload, iso_of_stamp(own_id[:24]))


def _type_of(name: str) -> str | None:
    if not name.endswith(".json") or name.endswith(".result.json") or "-" not in name:
        return None
    return name.split("-", 1)[1].split(".", 1)[0]


def _payload(path: Path) -> dict | None:
    try:
        payload = json.loads(files.read_regular(path, MAX_EVENT_BYTES))
    except (OSError, ValueError):
        return None
    return payload if isinstance(payload, dict) else None


def _listing(directory: Path) -> list[str]:
    try:
        return [name for name in os.listdir(directory) if not name.startswith(".")]
    except (FileNotFoundError, NotADirectoryError):
        return []

