"""Recording: where a handled event ends, and the result beside it.

Deciding and moving are two steps, so that a crash between them loses nothing:
  1. work/ID.result.json is written atomically: from here on the outcome is
     decided and a restarted node only finishes the move, it never re-runs.
  2. the event, then its .log, then the result are renamed into
     done/DAY/ (exit status 0) or failed/DAY/ (anything else), named
     HHMMSS.ffffff-STEM.json / .log / .result.json after the claim time, and
     that directory is fsynced (once for all the outcomes recorded together).
The script's log is fsynced before step 1, so a decided event's log is whole.

The result is one JSON object: event, type, id, node, attempt, status, reason,
exit_code, signal, script, timeout, started, ended, duration, log.
"""

import enum
import errno
import json
import os
import shutil
import signal as signals
import time
from dataclasses import dataclass
from pathlib import Path

from .atomic import fsync_dir, fsync_fd, remove_quietly, staged_name, write_synced
from .claim import Claim
from .faults import crash_point


class Status(str, enum.Enum):
    DONE = "done"
    FAILED = "failed"


@dataclass
class Outcome:
    """How the handling of one claim ended."""

    claim: Claim
    status: Status
    reason: str
    started: float
    ended: float
    exit_code: int | None = None
    signal: int | None = None
    script: str | None = None
    timeout: float | None = None
    logged: bool | None = None  # whether a .log goes with it; fixed at the first try to record
    log_fd: int | None = None  # the script's log, still open: synced (and closed) before deciding
    staged: Path | None = None  # its result, written into tmp/ but not yet synced (see `stage`)


    @classmethod
    def refused(cls, claim: Claim, reason: str) -> "Outcome":
        now = time.time()
        return cls(claim, Status.FAILED, reason, now, now)

    @classmethod
    def of_exit(cls, claim, returncode: int, started: float, script, timeout, timed_out: bool) -> "Outcome":
        status = Status.DONE if returncode == 0 and not timed_out else Status.FAILED
        signal = -returncode if returncode < 0 else None
        reason = _exit_reason(returncode, signal)
        if timed_out:
            reason = f"timed out after {timeout:g} s ({reason})"
        exit_code = returncode if returncode >= 0 else None
        return cls(claim, status, reason, started, time.time(), exit_code, signal, str(script), timeout)

    def as_json(self) -> dict:
        claim = self.claim
        return {
            "event": claim.original_name or claim.name,
            "type": claim.type if claim.original_name in ("", claim.name) else None,
            "id": claim.id,
            "node": claim.node_dir.node,
            "attempt": claim.attempt,
            "status": self.status.value,
            "reason": self.reason,
            "exit_code": self.exit_code,
            "signal": self.signal,
            "script": self.script,
            "timeout": self.timeout,
            "started": iso_time(self.started),
            "ended": iso_time(self.ended),
            "duration": round(self.ended - self.started, 6),
            "log": claim.record_name(".log") if self.logged else None,
        }


def record_all(outcomes) -> tuple[list[tuple[Outcome, Path]], OSError | None]:
    """Record the outcomes of a deque in order, taking each off it, and fsync each directory they moved into
    once for all of them: (the outcomes recorded with their final paths, the OSError that stopped it, or None).
    What is left, also what moved into a directory whose fsync failed, is recorded again at the next try."""
    moved, failure = [], None
    try:
        while outcomes:
            moved.append((outcomes[0], record(outcomes[0], sync_dir=False)))
            outcomes.popleft()
    except OSError as error:
        failure = error
    try:
        for directory in dict.fromkeys(final.parent for _, final in moved):
            fsync_dir(directory)
    except OSError as error:
        outcomes.extendleft(outcome for outcome, _ in reversed(moved))
        return [], error
    return moved, failure


def stage(outcome: Outcome) -> OSError | None:
    """Write the result into tmp/, not yet synced, so that a disk that cannot take it says so (the OSError)
    before the node claims more; `record` syncs it and renames it into work/ (the decision)."""
    if outcome.staged is not None:
        return None
    claim = outcome.claim
    if outcome.logged is None:
        outcome.logged = claim.log_path.exists()
    staged = claim.node_dir.tmp / staged_name(claim.result_path)
    try:
        write_synced(staged, (json.dumps(outcome.as_json(), indent=2) + "\n").encode(), sync=False)
    except OSError as error:
        remove_quietly(staged)
        return error
    outcome.staged = staged
    return None


def record(outcome: Outcome, sync_dir: bool = True) -> Path:
    """Decide (sync the log, write the result), then move the event's files; the event's final path.
    Not `sync_dir`: the caller fsyncs the final path's directory."""
    claim = outcome.claim
    if outcome.log_fd is not None:
        log_fd, outcome.log_fd = outcome.log_fd, None
        sync_log(log_fd)
    error = stage(outcome)
    if error is not None:
        raise error
    _decide(outcome)
    crash_point("decided")
    return finish(claim, outcome.status, sync_dir)


def _decide(outcome: Outcome) -> None:
    """Sync the staged result and rename it into work/; a failure removes it (the next try writes it again)."""
    staged, outcome.staged = outcome.staged, None
    try:
        fd = os.open(staged, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            fsync_fd(fd)
        finally:
            os.close(fd)
        os.rename(staged, outcome.claim.result_path)
    except BaseException:
        remove_quietly(staged)
        raise


def sync_log(log_fd: int) -> None:
    """Make a script's log durable, then close it."""
    try:
        if os.fstat(log_fd).st_size:  # an empty log has nothing to make durable
            os.fsync(log_fd)
    except OSError:
        pass  # the log is the script's output; its record still goes on
    finally:
        os.close(log_fd)


def finish(claim: Claim, status: Status, sync_dir: bool = True) -> Path:
    """Move a decided event's files into done/DAY/ or failed/DAY/ (idempotent); not `sync_dir`: without the
    fsync of that directory."""
    destination = _day_dir(claim, status)
    target = destination / claim.record_name(".json")
    _move_if_present(claim.path, target)
    crash_point("moved")
    for source, suffix in ((claim.log_path, ".log"), (claim.result_path, ".result.json")):
        _move_if_present(source, destination / claim.record_name(suffix))
    if sync_dir:
        fsync_dir(destination)  # work/ is not synced: on a journaling filesystem the renames out of it
    return target           # persist in order, and recovery finishes any move that did not


def decided_status(claim: Claim) -> Status | None:
    """The status written in work/ID.result.json, or None when not yet decided."""
    try:
        return Status(json.loads(claim.result_path.read_bytes())["status"])
    except FileNotFoundError:
        return None
    except (ValueError, KeyError, TypeError):
        return Status.FAILED  # a result that cannot be read still means: decided


def _day_dir(claim: Claim, status: Status) -> Path:
    parent = claim.node_dir.done if status is Status.DONE else claim.node_dir.failed
    day = parent / claim.day
    if not day.is_dir():
        day.mkdir(parents=True, exist_ok=True)
        fsync_dir(parent)
    return day


def _move_if_present(source: Path, target: Path) -> None:
    try:
        os.rename(source, target)
    except FileNotFoundError:
        pass
    except OSError as error:
        if error.errno != errno.EXDEV:
            raise
        _copy_then_remove(source, target)  # a log from the worker's own disk


def _copy_then_remove(source: Path, target: Path) -> None:
    """Move across filesystems: the source goes only once the whole copy is on disk (a retry copies again)."""
    with open(source, "rb") as reader, open(target, "wb") as writer:
        shutil.copyfileobj(reader, writer, 1 << 20)
        writer.flush()
        fsync_fd(writer.fileno())
    os.unlink(source)


def _exit_reason(returncode: int, signal: int | None) -> str:
    if signal:
        try:
            return f"killed by signal {signals.Signals(signal).name}"
        except ValueError:
            return f"killed by signal {signal}"
    return f"exit status {returncode}"


def iso_time(seconds: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{int(seconds % 1 * 1e6):06d}Z"
