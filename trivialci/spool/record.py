"""Recording: where a handled event ends, and the result beside it.

Deciding and moving are two steps, so that a crash between them loses nothing:
  1. work/ID.result.json is written atomically: from here on the outcome is
     decided and a restarted node only finishes the move, it never re-runs.
  2. the event, then its .log, then the result are renamed into
     done/DAY/ (exit status 0) or failed/DAY/ (anything else), named
     HHMMSS.ffffff-STEM.json / .log / .result.json after the claim time, and
     that directory is fsynced.

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

from .atomic import fsync_dir, fsync_fd, write_atomically
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


def record(outcome: Outcome) -> Path:
    """Decide (write the result), then move the event's files; the event's final path."""
    claim = outcome.claim
    if outcome.logged is None:
        outcome.logged = claim.log_path.exists()
    body = (json.dumps(outcome.as_json(), indent=2) + "\n").encode()
    write_atomically(claim.result_path, body, claim.node_dir.tmp, sync_dir=False)
    crash_point("decided")
    return finish(claim, outcome.status)


def finish(claim: Claim, status: Status) -> Path:
    """Move a decided event's files into done/DAY/ or failed/DAY/ (idempotent)."""
    destination = _day_dir(claim, status)
    target = destination / claim.record_name(".json")
    _move_if_present(claim.path, target)
    crash_point("moved")
    for source, suffix in ((claim.log_path, ".log"), (claim.result_path, ".result.json")):
        _move_if_present(source, destination / claim.record_name(suffix))
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
