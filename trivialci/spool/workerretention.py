"""Retention of what workers leave in SPOOL/workers/ besides their records: boot logs and the directories
of workers gone for good. A worker is gone since its last sign of life: the newest mtime of its
directory, its heartbeat (worker.json) and its lock (node.lock), all refreshed while it runs.

    workers/NAME.log, NAME.log.1   the output of a worker the hub booted (hub/boot.py appends to it).
                  Both go once the log was not written for keep_days days and its worker is gone
                  for as long (or has no directory). A NAME.log over log_bytes is cut: its last
                  log_bytes at most (from a line's start) replace NAME.log.1, then NAME.log is
                  truncated to nothing. The worker writes with O_APPEND, so it writes on at the
                  new end; what it writes between the copy and the truncation is lost (as with
                  logrotate's copytruncate).
    workers/NAME/  goes whole once its worker is gone for keep_days days, its inbox/, work/ and
                  sending/ are empty, its tmp/ holds nothing younger than a day, and every day folder of
                  its done/ and failed/ expires in the same prune (failed/ is kept longer: a
                  worker that failed something goes keep_failed_days after it stopped).
                  It is first renamed to workers/.gone.NAME.HEX (atomic: a worker starting
                  anew under NAME makes a fresh directory), then removed; a prune killed
                  half-way leaves a .gone.* directory, which the next prune removes.

The hub's state never reads these (a worker's record in state/ comes from the hub's own
done/), so a rebuilt state is the same with or without them. Links are never followed:
a link where a log or a worker directory should be is left alone.
"""

import os
import shutil
import stat
from pathlib import Path

from .atomic import fsync_dir, write_atomically
from .layout import NODE_NAME, NodeDir, hub_dir, worker_dir, worker_names
from .retention import Leftover, gone_is_fine, days_of, usage

SECONDS_A_DAY = 86400
GONE = ".gone."  # a worker directory being removed: workers/.gone.NAME.HEX
LOG = ".log"
SENDING = "sending"  # events on their way from a worker's outbox to the hub's inbox (spool/outbox.py)


def plan(spool, keep_days: int, log_bytes: int, now: float, expiring: set[Path]) -> list[Leftover]:
    """What goes from SPOOL/workers/ today; `expiring`: the day folders this prune removes anyway."""
    workers = Path(os.path.abspath(spool)) / "workers"
    cutoff = now - keep_days * SECONDS_A_DAY
    found = [Leftover(f"workers/{name}/", workers / name, *usage(workers / name))
             for name in _names(workers) if name.startswith(GONE) and _is_directory(workers / name)]
    for name in worker_names(spool):
        node = worker_dir(spool, name)
        if _gone_for_good(node, cutoff, now, expiring):
            found.append(Leftover(f"workers/{name}/", node.root, *usage(node.root)))
    return found + _boot_logs(spool, workers, cutoff, log_bytes)


def last_seen(root: Path) -> float | None:
    """The newest mtime of a worker's directory, heartbeat and lock (None: no such directory)."""
    seen = None
    for path in (root, root / "worker.json", root / "node.lock"):
        try:
            mtime = os.lstat(path).st_mtime
        except OSError:
            continue
        seen = mtime if seen is None else max(seen, mtime)
    return seen


def _gone_for_good(node: NodeDir, cutoff: float, now: float, expiring: set[Path]) -> bool:
    if not _is_directory(node.root) or (last_seen(node.root) or now) >= cutoff:
        return False
    if any(_names(where) for where in (node.inbox, node.work, node.root / SENDING)) or \
            _young_entries(node.tmp, now - SECONDS_A_DAY):
        return False
    return all(folder / day in expiring for folder in (node.done, node.failed) for day in days_of(folder))


def _young_entries(directory: Path, since: float) -> bool:
    for name in _names(directory):
        try:
            if os.lstat(directory / name).st_mtime >= since:
                return True
        except FileNotFoundError:
            continue
    return False


def _boot_logs(spool, workers: Path, cutoff: float, log_bytes: int) -> list[Leftover]:
    found = []
    for name in _names(workers):
        worker = _log_owner(name)
        info = _regular(workers / name)
        if worker is None or info is None:
            continue
        seen = last_seen(worker_dir(spool, worker).root)
        if info.st_mtime < cutoff and (seen is None or seen < cutoff):
            found.append(Leftover(f"workers/{name}", workers / name, 1, info.st_size))
        elif name.endswith(LOG) and info.st_size > log_bytes:
            found.append(Leftover(f"workers/{name}", workers / name, 1, info.st_size, keep_tail=log_bytes))
    return found


def _log_owner(name: str) -> str | None:
    """NAME of a boot log's file name (NAME.log or NAME.log.1), or None when it is not one."""
    for suffix in (LOG, LOG + ".1"):
        if name.endswith(suffix) and NODE_NAME.match(name[:-len(suffix)]) and name[:-len(suffix)] != "hub":
            return name[:-len(suffix)]
    return None


def remove_worker_directory(path: Path) -> None:
    """Rename workers/NAME aside (atomic), then remove it; a link there is left alone."""
    if not _is_directory(path):
        return
    if not path.name.startswith(GONE):
        aside = path.with_name(f"{GONE}{path.name}.{os.urandom(4).hex()}")
        os.rename(path, aside)
        fsync_dir(path.parent)
        path = aside
    shutil.rmtree(path, onerror=gone_is_fine)  # by descriptors: no link inside is followed


def cut_log(path: Path, keep: int, spool) -> None:
    """Keep the last `keep` bytes of a boot log (from a line's start) in PATH.1, then empty PATH."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        return
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return
        tail = _last_lines(fd, keep)
        write_atomically(path.with_name(path.name + ".1"), tail, hub_dir(spool).tmp)
        os.ftruncate(fd, 0)
    finally:
        os.close(fd)


def _last_lines(fd: int, keep: int) -> bytes:
    size = os.fstat(fd).st_size
    start = max(0, size - keep)
    tail = os.pread(fd, size - start, start)
    if start and b"\n" in tail:
        tail = tail[tail.index(b"\n") + 1:]  # a line cut in its middle is no line
    return tail


def _regular(path: Path) -> os.stat_result | None:
    try:
        info = os.lstat(path)
    except OSError:
        return None
    return info if stat.S_ISREG(info.st_mode) else None


def _is_directory(path: Path) -> bool:
    try:
        return stat.S_ISDIR(os.lstat(path).st_mode)
    except OSError:
        return False


def _names(directory: Path) -> list[str]:
    try:
        return os.listdir(directory)
    except OSError:
        return []

