"""`trivialci state verify`: is state/ what the event log says? Rebuild it elsewhere and compare.

The hub's state is rebuilt from SPOOL/checkpoint.json and done/ into a temporary
directory (the live spool is only read), then compared with state/ file by
file: the fold's files (jobs/, queue/ whose names are the order, workers/,
branches/, paused.json) and whether PAUSE exists. Each difference is one line;
a difference a hand edit explains says so (the tick records it). The hub
applies a change before the event that records it is handled, so while the
hub's inbox or work/ holds events the comparison waits for them (at most
`settle` seconds) and says when it could not.
"""

import json
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from . import checkpoint, pause
from .state import IDLE, HubState, _list
from ..spool import files

NOT_YET = "made by hand and not yet recorded: the hub records it at its next tick (trivialci hub --tick)"


@dataclass
class Verdict:
    differences: list[str] = field(default_factory=list)
    files: int = 0
    events: int = 0
    in_flight: int = 0

    def lines(self) -> list[str]:
        if not self.differences:
            return [f"state/ equals its rebuild from the event log ({self.files} files, {self.events} events)"]
        busy = f"; {self.in_flight} events were still in flight, run it again" if self.in_flight else ""
        return self.differences + [f"state/ differs from its rebuild from the event log in "
                                   f"{len(self.differences)} places{busy}"]


NOT_BUILT = ("state/ is not there, or not complete (no state/.built): the hub rebuilds it from the event log when "
             "it handles its next event; nothing to compare yet")


def verify_command(spool, say) -> int:
    """What `trivialci state verify` prints (through `say`), and its exit status: 0 equal, 1 not."""
    if not HubState(spool).is_built():
        say(NOT_BUILT)  # a person's `rm -r state/`: every file would be a difference, and none is one
        return 0
    verdict = verify(spool)
    for line in verdict.lines():
        say(line)
    return 1 if verdict.differences else 0


def verify(spool, settle: float = 5.0) -> Verdict:
    """Compare state/ with a rebuild; while the hub is busy, wait (at most `settle` s) and compare again."""
    deadline = time.monotonic() + settle
    while True:
        verdict = compare(spool)
        verdict.in_flight = in_flight(spool)
        if not verdict.differences or not verdict.in_flight or time.monotonic() > deadline:
            return verdict
        time.sleep(0.1)


def compare(spool) -> Verdict:
    live = HubState(spool)
    with tempfile.TemporaryDirectory(prefix="trivialci-verify-") as scratch:
        (Path(scratch) / "tmp").mkdir()
        rebuilt = HubState(spool, root=Path(scratch) / "state", staging=Path(scratch) / "tmp")
        events = rebuilt.rebuild()
        theirs, ours = fold_files(rebuilt.root), fold_files(live.root)
    differences = [line for path in sorted(set(theirs) | set(ours))
                   for line in _differences(path, ours.get(path), theirs.get(path), ours)]
    return Verdict(differences, len(ours), events)


def fold_files(root: Path) -> dict:
    """The fold's files under `root` (read as input: a link or special file reads as unreadable) and PAUSE."""
    found = {}
    for parent, directories, names in os.walk(root):
        directories[:] = [d for d in directories if not d.startswith(".")]
        for name in names:
            relative = Path(parent, name).relative_to(root).as_posix()
            if checkpoint.is_state_path(relative):
                record = files.read_json(Path(parent, name))
                found[relative] = record if isinstance(record, dict) else "unreadable"
    if os.path.lexists(root / pause.SWITCH):
        found[pause.SWITCH] = "exists"
    for name in _list(root, IDLE):  # the index of idle workers (a link there lists nothing)
        found[f"{IDLE}/{name}"] = "exists"
    return found


def _differences(path: str, ours, theirs, live: dict) -> list[str]:
    if ours == theirs:
        return []
    if theirs is None:
        return [f"{path}: in state/, not in the rebuild{_hint(path, live, present=True)}"]
    if ours is None:
        return [f"{path}: in the rebuild, not in state/{_hint(path, live, present=False)}"]
    if not isinstance(ours, dict) or not isinstance(theirs, dict):
        return [f"{path}: state/ has {_short(ours)}, the rebuild {_short(theirs)}"]
    return [f"{path}: {key} is {_short(ours.get(key))} in state/, {_short(theirs.get(key))} in the rebuild"
            for key in sorted(set(ours) | set(theirs)) if ours.get(key) != theirs.get(key)]


def _hint(path: str, live: dict, present: bool) -> str:
    """Why a file is where it is, when a hand edit the tick has not recorded yet explains it."""
    if path == pause.SWITCH and present and pause.RECORD not in live:
        return f" (PAUSE {NOT_YET})"
    if path == pause.SWITCH and not present and pause.RECORD in live:
        return f" (its removal was {NOT_YET})"
    if path.startswith("queue/") and not present:
        job = live.get(f"jobs/{path.rsplit('.', 2)[-2]}.json")
        if isinstance(job, dict) and job.get("status") == "QUEUED":
            return f" (its removal from the queue was {NOT_YET})"
    return ""


def _short(value) -> str:
    text = json.dumps(value, sort_keys=True) if not isinstance(value, str) else repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def in_flight(spool) -> int:
    """Events in the hub's inbox/ and work/: changes it may have applied and not yet recorded, or not yet applied."""
    node_dir = HubState(spool).node_dir
    waiting = [n for n in _names(node_dir.inbox) if n.endswith(".json") and not n.startswith(".")]
    return len(waiting) + len([n for n in _names(node_dir.work) if ".json." in n])


def _names(directory: Path) -> list[str]:
    try:
        return os.listdir(directory)
    except OSError:
        return []
