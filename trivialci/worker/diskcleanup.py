"""The worker's own disk, kept bounded: what jobs, crashes and time leave in WORKDIR.

    WORKDIR/jobs/JOB/             a worktree older than a day that no running job owns (no JOB.pid):
                                  removed, then `git worktree prune` in its mirror
    WORKDIR/artifacts/JOB/        left by a crash, older than a day: removed
    WORKDIR/upstream/JOB/         likewise (an earlier stage's files, fetched for a job: upstream.py)
    WORKDIR/logs/JOB.log, .ended  once the job ended more than log_days days ago (the store keeps log.txt)
    WORKDIR/event-logs/, outbox/tmp/   files older than a day: a crash's leftovers (a delivered outbox
                                  entry is unlinked when it is delivered)
    WORKDIR/mirrors/KEY.git       `git gc --auto` (git packs only when loose objects piled up); a mirror
                                  that no job used for keep_days days, with no worktree, is removed

clean_workdir does this at most once every `every` seconds (the mtime of
WORKDIR/cleaned says when it last did), so a worker can call it after each job.
Nothing younger than a day is touched, and nothing outside WORKDIR: links are
removed as links, never followed.
"""

import os
import shutil
import time
from pathlib import Path

from ..git.commands import GitError
from ..git.mirror import Mirror

DAY = 86400
STAMP = "cleaned"


def clean_workdir(workdir, keep_days: float = 30, log_days: float = 1, every: float = DAY,
                  now: float | None = None) -> list[str]:
    """Clean WORKDIR if it was not cleaned in the last `every` seconds; a line for each thing done."""
    workdir, now = Path(workdir), time.time() if now is None else now
    stamp = workdir / STAMP
    if _mtime(stamp) > now - every:
        return []
    workdir.mkdir(parents=True, exist_ok=True)
    stamp.touch()
    os.utime(stamp, (now, now))
    done = _leftover_worktrees(workdir, now) + _old_files(workdir / "artifacts", now - DAY)
    done += _old_files(workdir / "upstream", now - DAY)
    done += _ended_logs(workdir / "logs", now - log_days * DAY)
    done += _old_files(workdir / "event-logs", now - DAY) + _old_files(workdir / "outbox" / "tmp", now - DAY)
    return done + _mirrors(workdir, now - keep_days * DAY)


def _leftover_worktrees(workdir: Path, before: float) -> list[str]:
    jobs, done = workdir / "jobs", []
    for entry in _entries(jobs):
        if entry.is_dir(follow_symlinks=False) and not (jobs / f"{entry.name}.pid").exists() \
                and _mtime(Path(entry.path)) < before:
            shutil.rmtree(entry.path, ignore_errors=True)
            done.append(f"removed the leftover worktree {entry.path}")
    return done


def _ended_logs(logs: Path, before: float) -> list[str]:
    done = []
    for entry in _entries(logs):
        if entry.name.endswith(".ended") and _mtime(Path(entry.path)) < before:
            log = Path(entry.path).with_suffix(".log")
            done.append(f"removed the log {log} (ended {_days(entry.path)} days ago; the store keeps it)")
            log.unlink(missing_ok=True)
            Path(entry.path).unlink(missing_ok=True)
    return done


def _old_files(directory: Path, before: float) -> list[str]:
    done = []
    for entry in _entries(directory):
        if _mtime(Path(entry.path)) < before:
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path, ignore_errors=True)
            else:
                Path(entry.path).unlink(missing_ok=True)
            done.append(f"removed the leftover {entry.path}")
    return done


def _mirrors(workdir: Path, unused_since: float) -> list[str]:
    done = []
    for entry in _entries(workdir / "mirrors"):
        if not entry.name.endswith(".git") or not entry.is_dir(follow_symlinks=False):
            continue
        try:
            mirror, days = Mirror.at(entry.path), _days(entry.path)
            if mirror.path != Path(entry.path):
                continue  # not made by Mirror (its key is not its URL's): not ours to judge
            if mirror.last_used() < unused_since and mirror.remove_if_idle():
                done.append(f"removed the mirror of {mirror.repo}: no job used it for {days} days")
            else:
                mirror.gc_auto()
                mirror.prune()
        except (GitError, OSError) as error:
            done.append(f"could not clean the mirror {entry.path}: {error}")
    return done


def _entries(directory: Path) -> list[os.DirEntry]:
    try:
        with os.scandir(directory) as entries:
            return list(entries)
    except (FileNotFoundError, NotADirectoryError):
        return []


def _mtime(path: Path) -> float:
    try:
        return os.lstat(path).st_mtime
    except OSError:
        return 0.0


def _days(path) -> int:
    return int((time.time() - _mtime(Path(path))) // DAY)
