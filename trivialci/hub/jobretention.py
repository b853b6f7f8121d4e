"""Which jobs leave the artifact store: the job retention policy, exactly.

A job is removed when all of these hold:
  - it is final (PASSED, FAILED, CANCELLED, SUPERSEDED) in its job.json, and the
    hub's state does not hold it as queued, running or LOST;
  - it ended more than keep_days days ago (its `ended`, else the time in its id);
  - it is not among the keep_last newest jobs (by id: the time it was queued) of
    its (repository, branch, kind);
  - it is not the newest PASSED job of its (repository, branch, kind).
A job with a job.json that cannot be read is kept (nothing proves it final). A
job with no job.json at all (a prune was killed after removing it, or its worker
died while uploading) is removed once its id is more than keep_days days old and
the hub's state does not hold it: it is invisible to `history` already.

Removing a job deletes its job.json first (one batch for every job removed),
then the rest of its keys (a directory store: the job's directory; S3: the keys
listed, 1,000 per request): a prune killed at any point leaves each job whole or
invisible, and the next prune finishes what it started.
"""

import calendar
import datetime
import json
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from ..jobs import FINAL, JobStatus, is_job_id
from ..store import ArtifactStore, DirectoryStore, StoreMissing
from ..store.history import JOBS

READERS = 8  # job.json reads in flight at once (an S3 store answers each in a round trip)
DELETE_BATCH = 1000  # keys of removed jobs per delete_keys call (S3's DeleteObjects takes 1,000)
UNREADABLE = object()


@dataclass
class StoredJob:
    """What the store holds of one job: its record (None: no job.json; UNREADABLE) and its keys."""

    job: str
    record: object = None
    keys: dict = None  # key -> size

    @property
    def bytes(self) -> int:
        return sum(self.keys.values())

    def describe(self) -> str:
        record = self.record if isinstance(self.record, dict) else {}
        what = " ".join(str(record.get(name, "?")) for name in ("branch", "kind", "status"))
        return f"job {self.job} ({what if record else 'no job.json'}; {len(self.keys)} keys, {self.bytes} bytes)"


def stored_jobs(store: ArtifactStore) -> dict[str, StoredJob]:
    """Every job under jobs/, with its keys and sizes (one listing) and its record (one read each)."""
    jobs: dict[str, StoredJob] = {}
    for key, size in _listing(store).items():
        job = key[len(JOBS):].split("/", 1)[0]
        if is_job_id(job):
            jobs.setdefault(job, StoredJob(job, keys={})).keys[key] = size
    readable = [job for job in jobs.values() if f"{JOBS}{job.job}/job.json" in job.keys]
    with ThreadPoolExecutor(READERS, thread_name_prefix="prune-read") as pool:
        for job, record in zip(readable, pool.map(lambda job: _record(store, job.job), readable)):
            job.record = record
    return jobs


def _listing(store: ArtifactStore) -> dict[str, int]:
    try:
        return store.key_sizes(JOBS)
    except StoreMissing:
        if isinstance(store, DirectoryStore):
            return {}  # no job wrote to it yet: its directory is made by the first
        raise


def _record(store: ArtifactStore, job: str):
    try:
        record = json.loads(store.get_bytes(f"{JOBS}{job}/job.json"))
    except StoreMissing:
        return None
    except (ValueError, RecursionError):
        return UNREADABLE
    return record if isinstance(record, dict) else UNREADABLE


def jobs_to_remove(jobs: dict[str, StoredJob], keep_days: float, keep_last: int, now: float,
                   active: set[str]) -> list[str]:
    """The ids of the jobs the policy removes, oldest first."""
    cutoff = now - keep_days * 86400
    kept = _newest_of_groups(jobs, keep_last)
    gone = []
    for job_id in sorted(jobs):
        job = jobs[job_id]
        if job_id in active or job_id in kept or job.record is UNREADABLE:
            continue
        if job.record is None:
            old = id_time(job_id) < cutoff
        else:
            old = _status(job.record) in FINAL and _ended(job.record, job_id) < cutoff
        if old:
            gone.append(job_id)
    return gone


def _newest_of_groups(jobs: dict[str, StoredJob], keep_last: int) -> set[str]:
    """The keep_last newest jobs of each (repository, branch, kind), and the newest PASSED of each."""
    kept, seen, passed = set(), {}, set()
    for job_id in sorted(jobs, reverse=True):
        record = jobs[job_id].record
        if not isinstance(record, dict):
            continue
        group = (str(record.get("repo")), str(record.get("branch")), str(record.get("kind")))
        seen[group] = seen.get(group, 0) + 1
        if seen[group] <= keep_last:
            kept.add(job_id)
        if _status(record) == JobStatus.PASSED and group not in passed:
            passed.add(group)
            kept.add(job_id)
    return kept


def _status(record: dict):
    try:
        return JobStatus(record.get("status"))
    except ValueError:
        return None


def _ended(record: dict, job_id: str) -> float:
    stamp = record.get("ended")
    if isinstance(stamp, str):
        try:
            return datetime.datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
        except ValueError:
            pass
    return id_time(job_id)


def id_time(job_id: str) -> float:
    """When a job was queued, from its id (YYYYmmddTHHMMSSZ-xxxxxx)."""
    return calendar.timegm(time.strptime(job_id[:16], "%Y%m%dT%H%M%SZ"))


def remove_jobs(store: ArtifactStore, jobs: list[StoredJob], crash_point=lambda where: None) -> None:
    """Every job.json first, in one batched call; then each job's other keys. A directory store removes each
    job's directory in one walk (with whatever else lies in it); another store (S3) the keys its listing found,
    up to DELETE_BATCH in one call, rather than a listing and a delete per job."""
    store.delete_keys([f"{JOBS}{job.job}/job.json" for job in jobs])
    crash_point("prune-records-deleted")
    if isinstance(store, DirectoryStore):
        for job in jobs:
            store.delete_prefix(f"{JOBS}{job.job}/")
            crash_point("prune-job-removed")
        return
    for batch in _batches(jobs):
        store.delete_keys([key for job in batch for key in job.keys])
        crash_point("prune-job-removed")


def _batches(jobs: list[StoredJob]):
    """The jobs in runs whose keys add up to at most DELETE_BATCH (a job with more keys is a run of its own)."""
    batch, keys = [], 0
    for job in jobs:
        if batch and keys + len(job.keys) > DELETE_BATCH:
            yield batch
            batch, keys = [], 0
        batch.append(job)
        keys += len(job.keys)
    if batch:
        yield batch
