"""The checkpoint: the hub's state folded from the done/ days that were pruned, so that state/ can still be rebuilt.

    SPOOL/checkpoint.json   {"through": DAY, "written": TIME, "files": {PATH: RECORD, ...}}

PATH is a file of the fold under state/ (jobs/JOB.json, queue/KIND/TIME.JOB.json,
workers/NAME.json, branches/KEY.json, paused.json) and RECORD its JSON object. It is the state
as it was once every event of the hub's done/ up to and including day `through`
had been applied, less what compaction dropped (below).

Prune writes it (atomically, fsynced) before it removes any of those days, folding
them into the checkpoint before. HubState.rebuild restores its files, then replays
only the days after `through`: a day at or before it that a killed prune had no
time to remove is skipped, so no event is applied twice. Deleting state/ after a
prune therefore brings back the queue, the running jobs and the workers exactly.

Compaction keeps it, and state/, bounded: a job that is final and that no event
after `through` mentions leaves both (the artifact store keeps its record), and so
does a branch's record once it lists no job and no event after `through` touches
the branch. Everything else (queued and running jobs, LOST jobs, workers) stays.
Because the live state drops exactly what the checkpoint drops, a state rebuilt
after a prune equals the state it replaced.

The checkpoint is input like any file in the spool: a path that is not one of the
shapes above is refused, and a damaged checkpoint stops the rebuild with a message
rather than rebuild a state that silently lost its queue.
"""

import json
import os
import re
from pathlib import Path

from ..errors import BadInput
from ..jobs import FINAL, iso_now
from ..spool.atomic import write_atomically
from ..spool.layout import NodeDir

CHECKPOINT = "checkpoint.json"
PARTS = ("jobs", "queue", "workers", "branches")
SINGLES = ("paused.json",)  # files of the fold directly under state/ (state/PAUSE follows from paused.json)
MAX_BYTES = 256 << 20
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}\.json\Z")
_KIND = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,62}\Z")
_DAY = re.compile(r"\d{4}-\d\d-\d\d\Z")


def path_of(node_dir: NodeDir) -> Path:
    return node_dir.root / CHECKPOINT


def read(node_dir: NodeDir) -> dict:
    """The checkpoint ({"through": "", "files": {}} when there is none); BadInput when it is damaged."""
    path = path_of(node_dir)
    try:
        with open(path, "rb") as file:
            data = file.read(MAX_BYTES + 1)
    except FileNotFoundError:
        return {"through": "", "files": {}}
    try:
        checkpoint = json.loads(data)
        return _checked(checkpoint)
    except (ValueError, TypeError, RecursionError) as error:
        raise BadInput(f"the hub's checkpoint {path} is damaged ({error}): state/ cannot be rebuilt without it; "
                       f"restore it from a backup, or move it away to rebuild from the days left in done/ "
                       f"(jobs queued before those days are then forgotten)") from None


def _checked(checkpoint) -> dict:
    if not isinstance(checkpoint, dict) or not isinstance(checkpoint.get("files"), dict):
        raise ValueError("not an object with a files object")
    through = checkpoint.get("through")
    if not isinstance(through, str) or not (through == "" or _DAY.match(through)):
        raise ValueError(f"through is {through!r}, not a day YYYY-MM-DD")
    for path, record in checkpoint["files"].items():
        if not is_state_path(path) or not isinstance(record, dict):
            raise ValueError(f"{path!r} is not a file of the hub's state with an object in it")
    return checkpoint


def is_state_path(path) -> bool:
    """Whether `path` is one of the fold's files: PART/NAME.json, queue/KIND/NAME.json, or one of SINGLES."""
    if path in SINGLES:
        return True
    parts = path.split("/") if isinstance(path, str) else []
    depth = 3 if parts[:1] == ["queue"] else 2
    return len(parts) == depth and parts[0] in PARTS and all(_KIND.match(p) for p in parts[1:-1]) \
        and bool(_NAME.match(parts[-1]))


def restore(state) -> str:
    """Write the checkpoint's files into `state` (a HubState); the last day it holds ("" for none)."""
    checkpoint = read(state.node_dir)
    for path, record in sorted(checkpoint["files"].items()):
        state._write(path, record)
    return checkpoint["through"]


def snapshot(root: Path) -> dict:
    """The fold's files under `root`, as the checkpoint holds them."""
    files = {}
    for part in PARTS:
        for parent, _, names in os.walk(root / part):
            for name in names:
                path = Path(parent, name)
                relative = path.relative_to(root).as_posix()
                if is_state_path(relative):
                    files[relative] = json.loads(path.read_text())
    for single in SINGLES:
        if (root / single).is_file():
            files[single] = json.loads((root / single).read_text())
    return files


def write(node_dir: NodeDir, through: str, files: dict) -> None:
    """Replace the checkpoint, atomically: a crash leaves the old one or the new one."""
    data = json.dumps({"through": through, "written": iso_now(), "files": files}, sort_keys=True).encode() + b"\n"
    write_atomically(path_of(node_dir), data, node_dir.tmp)


def dropped(files: dict, mentioned_jobs: set, touched_branches: set) -> list[str]:
    """The paths compaction drops: final jobs no later event mentions, empty branches no later event touches."""
    gone = []
    for path, record in files.items():
        name = path.split("/")[-1][:-len(".json")]
        if path.startswith("jobs/") and record.get("status") in FINAL and name not in mentioned_jobs:
            gone.append(path)
        elif path.startswith("branches/") and record.get("jobs") == [] and name not in touched_branches:
            gone.append(path)
    return sorted(gone)
