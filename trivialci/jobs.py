"""Jobs: one build of one sha of one branch by one worker kind.

A job id is JOB = YYYYmmddTHHMMSSZ-xxxxxx (the UTC time it was queued, then 6
random hex digits): ids sort by time, so the newest jobs are found by listing,
never by reading every record. A job's status is one of the words below,
stored as that string everywhere (events, state/, the artifact store).
"""

import calendar
import enum
import re
import secrets
import time

JOB_ID = re.compile(r"\d{8}T\d{6}Z-[0-9a-f]{6}\Z")


class JobStatus(str, enum.Enum):
    HELD = "HELD"  # untrusted (a fork's pull request): never dispatched until `trivialci approve JOB`
    QUEUED = "QUEUED"  # waiting in state/queue/KIND/ for a worker
    STARTING = "STARTING"  # handed to a worker, which is fetching and checking out
    BUILDING = "BUILDING"  # the repository's .trivialci/KIND runs
    PASSED = "PASSED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"  # by `trivialci cancel`, or its branch was deleted
    SUPERSEDED = "SUPERSEDED"  # a newer push of its branch replaced it
    LOST = "LOST"  # its worker stopped answering; the job is queued again as the next attempt

    @property
    def final(self) -> bool:
        return self in FINAL


FINAL = {JobStatus.PASSED, JobStatus.FAILED, JobStatus.CANCELLED, JobStatus.SUPERSEDED}
RUNNING = {JobStatus.STARTING, JobStatus.BUILDING}


def new_job_id(now: float | None = None) -> str:
    now = time.time() if now is None else now
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now)) + "-" + secrets.token_hex(3)


def is_job_id(text: str) -> bool:
    return bool(JOB_ID.match(text))


def iso_now() -> str:
    now = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now % 1 * 1e3):03d}Z"


def seconds_between(start: str | None, end: str | None) -> float | None:
    """Seconds from one iso_now() string to another, or None when either is missing."""
    if not start or not end:
        return None
    return round(_epoch(end) - _epoch(start), 3)


def _epoch(stamp: str) -> float:
    whole, _, fraction = stamp.rstrip("Z").partition(".")
    return calendar.timegm(time.strptime(whole, "%Y-%m-%dT%H:%M:%S")) + float("0." + (fraction or "0"))
