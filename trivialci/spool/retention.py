"""Retention of the records of every node of a spool: which day folders and housekeeping records go.

For the hub and each worker (SPOOL/ and SPOOL/workers/NAME/), with days in UTC:

    done/DAY/     goes whole once DAY is more than keep_days days before today
    failed/DAY/   goes whole once DAY is more than keep_failed_days days before today
                  (kept longer than done/ by default: a refusal is what a person comes back to read)
    done/DAY/HHMMSS.ffffff-TYPE....   the records of a housekeeping TYPE (tick): its .json, .log and
                  .result.json go once DAY is more than housekeeping_days days before today

Folders whose name is not a day, and dot-files, are left alone. inbox/, work/ and
tmp/ are never touched here: they hold events not yet recorded (the node itself
reaps tmp/ files older than a day). A day goes with one rmtree; a removal killed
half-way leaves part of a day folder, which the next prune removes. Which of the
hub's done/ days may go is for the hub to say (its state is folded from them):
`hub_done_through` bounds them.
"""

import datetime
import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from .layout import NodeDir, hub_dir, worker_dir, worker_names

DAY = re.compile(r"\d{4}-\d\d-\d\d\Z")
RECORD = re.compile(r"\d{6}\.\d{6}-([a-z][a-z0-9_]*)[.]")


@dataclass(frozen=True)
class SpoolPolicy:
    """How long records stay, in days; see the module docstring."""

    keep_days: int = 30
    keep_failed_days: int = 90
    housekeeping_days: int = 1
    housekeeping: tuple[str, ...] = ("tick",)


@dataclass
class Removal:
    """One thing to remove: a whole day folder, or some records of a day (`files`)."""

    node: str
    where: str  # "done" or "failed"
    day: Path
    files: list[Path] = field(default_factory=list)  # empty: the whole day folder
    count: int = 0
    bytes: int = 0

    @property
    def whole_day(self) -> bool:
        return not self.files

    def describe(self) -> str:
        what = f"{self.where}/{self.day.name}" if self.whole_day else f"{self.count} housekeeping files in " \
                                                                        f"{self.where}/{self.day.name}"
        return f"{self.node}: {what} ({self.count} files, {self.bytes} bytes)"


@dataclass
class Leftover:
    """A file or directory outside done/ and failed/ that a prune removes, or a log it cuts (keep_tail > 0:
    its last keep_tail bytes stay)."""

    shown: str  # as a person finds it: workers/NAME/, workers/NAME.log, state/requests/REQ.json
    path: Path
    count: int = 0
    bytes: int = 0
    keep_tail: int = 0
    root: Path | None = None  # set: `path` is under it and is reached without following a link

    @property
    def freed(self) -> int:
        return self.bytes - min(self.keep_tail, self.bytes)

    def line(self, done: bool) -> str:
        if self.keep_tail:
            return (f"{'cut' if done else 'would cut'} {self.shown} ({self.bytes} bytes): at most its last "
                    f"{self.keep_tail} bytes stay in {self.path.name}.1")
        return f"{'removed' if done else 'would remove'} {self.shown} ({self.count} files, {self.bytes} bytes)"


def day_before(today: datetime.date, days: int) -> str:
    """The day `days` days before `today`, as a day folder is named: folders before it have expired."""
    return (today - datetime.timedelta(days=days)).isoformat()


def node_dirs(spool) -> list[NodeDir]:
    """The hub's node directory and every worker's."""
    return [hub_dir(spool)] + [worker_dir(spool, name) for name in worker_names(spool)]


def days_of(directory: Path) -> list[str]:
    """The day folders in `directory` (done/ or failed/), oldest first."""
    try:
        return sorted(name for name in os.listdir(directory) if DAY.match(name))
    except (FileNotFoundError, NotADirectoryError):
        return []


def expired_days(directory: Path, keep_days: int, today: datetime.date) -> list[str]:
    first_kept = day_before(today, keep_days)
    return [day for day in days_of(directory) if day < first_kept]


def plan(spool, policy: SpoolPolicy, today: datetime.date, hub_done_through: str | None = None) -> list[Removal]:
    """What the policy removes from every node of `spool` today; nothing is changed."""
    removals = []
    for node in node_dirs(spool):
        removals += _node_plan(node, policy, today, hub_done_through if node.is_hub else None)
    return removals


def _node_plan(node: NodeDir, policy: SpoolPolicy, today: datetime.date, done_through: str | None) -> list[Removal]:
    done_days = expired_days(node.done, policy.keep_days, today)
    if node.is_hub:
        done_days = [day for day in done_days if done_through is not None and day <= done_through]
    removals = [_whole_day(node, "done", day) for day in done_days]
    removals += [_whole_day(node, "failed", day) for day in expired_days(node.failed, policy.keep_failed_days, today)]
    last_housekeeping = day_before(today, policy.housekeeping_days)
    for day in days_of(node.done):
        if day not in done_days and day < last_housekeeping:
            removals += _housekeeping(node, day, policy.housekeeping)
    return [removal for removal in removals if removal.count or removal.whole_day]


def _whole_day(node: NodeDir, where: str, day: str) -> Removal:
    folder = getattr(node, where) / day
    count, size = usage(folder)
    return Removal(node.node, where, folder, count=count, bytes=size)


def _housekeeping(node: NodeDir, day: str, types: tuple[str, ...]) -> list[Removal]:
    folder = node.done / day
    files = []
    with os.scandir(folder) as entries:
        for entry in entries:
            match = RECORD.match(entry.name)
            if match and match.group(1) in types and entry.is_file(follow_symlinks=False):
                files.append(entry)
    if not files:
        return []
    size = sum(entry.stat(follow_symlinks=False).st_size for entry in files)
    return [Removal(node.node, "done", folder, [Path(entry.path) for entry in files], len(files), size)]


def usage(folder: Path) -> tuple[int, int]:
    """(files, bytes) under `folder`, links not followed."""
    count = size = 0
    for parent, _, names in os.walk(folder):
        for name in names:
            try:
                size += os.lstat(os.path.join(parent, name)).st_size
            except FileNotFoundError:
                continue
            count += 1
    return count, size


def remove(removal: Removal) -> None:
    """Carry out one removal; what is already gone is no error."""
    if removal.whole_day:
        shutil.rmtree(removal.day, ignore_errors=False, onerror=gone_is_fine)
        return
    for path in removal.files:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass


def gone_is_fine(function, path, error_info) -> None:
    if not isinstance(error_info[1], FileNotFoundError):
        raise error_info[1]
