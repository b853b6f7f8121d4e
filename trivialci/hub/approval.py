"""Jobs that wait for a person: HELD until `trivialci approve JOB`, and only for the sha they were held for.

The script that queues a job decides whether it is trusted
(pipeline/pull_request.py: a pull request from a fork is not, unless its
author is on the list at the top of the script). An untrusted job is held:
it is filed in state/held/, never in a queue, so dispatch never sees it, and
its commit shows a pending status "waiting for approval".

`trivialci approve JOB` sends approve {job, sha, by}, with the sha the job is
held for as the person saw it. The approval is refused when the job's sha is
another one, and it never carries over: a new push to the pull request
supersedes the held job and holds a new one, which needs an approval of its
own (an approval that would cover later pushes lets code nobody looked at
run, as in Gitea Actions' GHSA-777r-4v59-6486). An approved job is QUEUED
with "approval": {by, sha, at}; it stays "trusted": false (a sandbox gives it
no secrets).
"""

import re

from ..errors import BadInput
from ..git.commands import check_sha
from ..jobs import JobStatus, iso_now
from .scheduling import record_status
from .state import HubState, check_name

APPROVER = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.@+-]{0,63}\Z")


def hold_job(state: HubState, package: dict) -> dict:
    """File a job as HELD (package as for queue_job); it waits for approve_job."""
    return record_status(state, {**package, "status": JobStatus.HELD, "queued": iso_now()})


def approve_job(state: HubState, job_id: str, sha: str, by: str) -> dict:
    """Queue a HELD job whose sha is `sha`; BadInput (nothing changes) for any other job or sha."""
    job = state.job(check_name(job_id, "job id"))
    if job is None:
        raise BadInput(f"no job {job_id} in the hub's state: see `trivialci jobs`")
    if job["status"] != JobStatus.HELD:
        raise BadInput(f"{job_id} is {job['status']}, not HELD: only a held job can be approved")
    if check_sha(sha) != job["sha"]:
        raise BadInput(f"{job_id} is held for {job['sha'][:12]}, not {sha[:12]}: the pull request moved on; "
                       "look at the commit it holds now, and approve that")
    approver = by if isinstance(by, str) and APPROVER.match(by) else "someone"
    approval = {"by": approver, "sha": job["sha"], "at": iso_now()}
    return record_status(state, {"job": job_id, "status": JobStatus.QUEUED, "attempt": job["attempt"],
                                 "approval": approval, "held_since": job.get("queued"), "queued": iso_now()})
