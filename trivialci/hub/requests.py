"""Build requests: `trivialci build` asks the hub to build a branch now, and may wait; `trivialci rebuild` likewise.

The request is a branch_update (or rebuild) event with a "request" id; the
hub's script writes state/requests/REQ.json with the jobs it queued (every
stage of the push), and the job view (state/jobs/) says when each is final.
"""

import secrets
import time

from .. import git
from ..spool.delivery import emit
from ..errors import BadInput
from .state import HubState
from ..jobs import JobStatus

POLL_SECONDS = 0.2


def request_build(spool, repo: str, branch: str) -> dict:
    heads = git.ls_remote_heads(repo)
    if branch not in heads:
        raise BadInput(f"{repo} has no branch {branch!r}; it has: {', '.join(sorted(heads)) or 'none'}")
    payload = {"repo": repo, "branch": branch, "old": None, "new": heads[branch], "request": secrets.token_hex(8)}
    emit("branch_update", payload, to="hub", spool=spool)
    return payload


def request_rebuild(spool, job: str, downstream: bool) -> str:
    """Ask the hub to run `job` again (and the later stages of its push, with `downstream`); the request id."""
    request = secrets.token_hex(8)
    emit("rebuild", {"job": job, "downstream": downstream, "request": request}, to="hub", spool=spool)
    return request


def wait_for_request(spool, request_id: str, timeout: float, say) -> int:
    """Wait until every job of the request is final; 0 if all PASSED, else 1."""
    state, deadline = HubState(spool), time.monotonic() + timeout
    while time.monotonic() < deadline:
        request = state.request(request_id)
        jobs = [state.job(job_id) for job_id in (request or {}).get("jobs", [])]
        if request is not None and all(job and JobStatus(job["status"]).final for job in jobs):
            return _report(request, jobs, say)
        time.sleep(POLL_SECONDS)  # the hub's state is files: polling them is the interface
    say(f"gave up waiting after {timeout:g} s; the jobs go on (see `trivialci jobs`)")
    return 1


def _report(request: dict, jobs: list[dict], say) -> int:
    if not jobs:
        say(request["note"])
        return 1
    for job in jobs:
        say(f"{job['job']}  {job['kind']:<12} {job['status']:<10} {job.get('reason') or ''}")
    return 0 if all(job["status"] == JobStatus.PASSED for job in jobs) else 1
