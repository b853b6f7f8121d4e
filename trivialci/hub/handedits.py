"""Hand edits: what a person does to state/ is noticed by the hub and recorded as events, so a rebuild keeps it.

state/ is derived from the event log, but a person may act on three of its
files; the hub's tick (pipeline/tick.py) compares them with the event log's
view and records each difference through the same path as any change:

  rm state/queue/KIND/TIME.JOB.json   the job, still QUEUED in jobs/JOB.json, has no entry: it becomes
                                      CANCELLED, reason "removed from the queue by hand" (a work_status,
                                      and its job.json in the store, as `trivialci cancel` does)
  touch state/PAUSE                   PAUSE exists and paused.json does not: a `pause` event, whose reason
                                      is the first line of what PAUSE holds
  rm state/PAUSE                      paused.json exists and PAUSE does not: a `resume` event

A change of PAUSE is also recorded by every dispatch before it looks at
PAUSE (pause.notice_by_hand), so a job handed out after a person removed PAUSE
always follows the `resume` in the log.

The queued jobs are found through branches/ (every job that is not final is
listed there), so a tick reads the branch records, the jobs they list, and the
queue's directory listings: not every job the state holds. A job is read
before the queue is listed and again after: the fold writes a queue entry
before its job says QUEUED and removes it only after the job says otherwise,
so a job that still says QUEUED, at the same attempt, after its entry was
seen missing lost it to a person, not to the hub. Anything else a person
changes in state/ is not an edit the hub knows: `trivialci state verify` shows
it, and a rebuild undoes it.
"""

import os

from . import pause
from .scheduling import end_queued
from .state import SAFE_NAME, HubState, _list
from ..jobs import JobStatus

REMOVED = "removed from the queue by hand"


def notice_hand_edits(state: HubState) -> list[str]:
    """Record what a person changed in state/ since the last tick; a line for the log for each change."""
    return _dequeued_by_hand(state) + _paused_by_hand(state)


def _dequeued_by_hand(state: HubState) -> list[str]:
    lines = []
    for job in _queued_jobs(state):
        entry = state.queue_entry(job)
        if _exists(state.root / entry):
            continue
        again = state.job(job["job"])
        if again and again.get("status") == JobStatus.QUEUED and again.get("attempt") == job.get("attempt"):
            end_queued(state, again, JobStatus.CANCELLED, REMOVED)
            lines.append(f"{job['job']}: {REMOVED} (state/{entry}): CANCELLED")
    return lines


def _queued_jobs(state: HubState) -> list[dict]:
    """The jobs that jobs/ holds as QUEUED, found through the branch records."""
    listed = []
    for name in sorted(_list(state.root, "branches")):
        record = state._read(f"branches/{name}")
        jobs = record.get("jobs") if isinstance(record, dict) else None
        listed += [job for job in jobs if isinstance(job, str)] if isinstance(jobs, list) else []
    found = (state.job(job_id) for job_id in dict.fromkeys(listed) if _is_file_name(job_id))
    return [job for job in found if isinstance(job, dict) and job.get("status") == JobStatus.QUEUED
            and isinstance(job.get("kind"), str) and _is_file_name(job["kind"])]


def _paused_by_hand(state: HubState) -> list[str]:
    line = pause.notice_by_hand(state)
    return [line] if line else []


def _exists(path) -> bool:
    return os.path.lexists(path)


def _is_file_name(value) -> bool:
    return isinstance(value, str) and bool(SAFE_NAME.match(value))
