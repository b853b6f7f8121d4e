"""Build requests: `trivialci build` asks the hub to build a branch now, and may wait; `trivialci rebuild` likewise.

The request is a branch_update (or rebuild) event with a "request" id; the
hub's script writes state/requests/REQ.json with the jobs it queued (every
stage of the push), and the job view (state/jobs/) says when each is final.
Only a waiting `--wait` reads a request file, so a prune removes those
answered more than a day ago (every job final, or gone from state/jobs/) and
any older than keep_days. They are no part of the fold: a rebuild of state/
neither makes nor needs them.
"""

import secrets
import stat
import time

from .. import git
from ..spool.atomic import remove_if_present
from ..spool.delivery import emit
from ..spool.files import list_names, lstat_under
from ..spool.retention import Leftover
from ..errors import BadInput
from .state import HubState
from ..jobs import FINAL, REQUEST_ID, JobStatus, is_job_id

POLL_SECONDS = 0.2
ANSWERED_FOR = 86400.0  # a request file this old whose jobs are final has been read by whoever waited on it


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


def expired_requests(state: HubState, keep_days: int, now: float) -> list[Leftover]:
    """The request files a prune removes: answered more than a day ago, or made more than keep_days ago."""
    found = []
    for name in sorted(list_names("requests", state.root)):
        if not (name.endswith(".json") and REQUEST_ID.match(name[:-5])):
            continue
        info = _regular(state, f"requests/{name}")
        if info is None or info.st_mtime >= now - ANSWERED_FOR:
            continue
        if info.st_mtime < now - keep_days * 86400 or _answered(state, state.request(name[:-5])):
            found.append(Leftover(f"hub: state/requests/{name}", state.root / "requests" / name, 1, info.st_size,
                                  root=state.root))
    return found


def _answered(state: HubState, request: dict | None) -> bool:
    jobs = (request or {}).get("jobs")
    if not isinstance(jobs, list):
        return True  # unreadable: nobody waits on it
    return all((state.job(job) or {}).get("status", JobStatus.PASSED) in FINAL
               for job in jobs if isinstance(job, str) and is_job_id(job))


def _regular(state: HubState, relative: str):
    try:
        info = lstat_under(relative, state.root)
    except OSError:
        return None
    return info if stat.S_ISREG(info.st_mode) else None


def remove_request(leftover: Leftover) -> None:
    remove_if_present(leftover.path.relative_to(leftover.root), root=leftover.root)
