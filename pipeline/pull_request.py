"""Hub: a pull request (GitLab: merge request) was opened, pushed to, reopened or closed on a forge.

Its head commit is built like a push of the branch pull/N (GitLab:
merge-requests/N), the forge's own ref for the request, which the mirrors
fetch (refs/pull/N/head, refs/merge-requests/N/head). A newer push to the
request supersedes its older jobs; closing (or merging) it cancels them.

Who is trusted is decided here, by the two settings below. A pull request
from a branch of the repository itself is built at once: its author can push
there anyway. One from a fork runs code nobody has looked at yet: its jobs are
HELD (`trivialci jobs` lists them, the forge shows "waiting for approval")
until a person runs `trivialci approve JOB`, which holds for that head commit
only: the next push to the request waits for an approval of its own, and so
does each job of a later stage (`.trivialci/NN-KIND`) when its stage comes. Its jobs
carry "trusted": false either way, so a sandbox gives them no secrets.
"""

import json
import os
import sys

from trivialci import TrivialCiError
from trivialci.forge import forge_fields, pull_request_fields
from trivialci.git import Mirror, check_branch, check_repo, check_sha
from trivialci.hub import (HubState, boot_workers, dispatch, end_job, hold_job, plan_stages, queue_push,
                           refuse_off_hub)
from trivialci.jobs import JobStatus

refuse_off_hub("pull_request")  # a hub's event dropped into a worker's inbox changes nothing there

TRUSTED_AUTHORS = []  # forge user names whose pull requests from forks are built without an approval
TRUST_OWN_BRANCHES = True  # a pull request from a branch of the repository itself is built without one


def main(payload: dict) -> None:
    state = HubState.open(os.environ["TRIVIALCI_SPOOL"])
    repo, branch, request = check_repo(payload["repo"]), check_branch(payload["branch"]), pull_request_fields(payload)
    if branch not in (f"pull/{request['pr']}", f"merge-requests/{request['pr']}"):
        raise TrivialCiError(f"bad branch {branch!r} for pull request {request['pr']}: pull/N or merge-requests/N")
    if payload.get("action") == "closed":
        end_jobs(state, repo, branch, JobStatus.CANCELLED, f"pull request {branch} was closed")
        return
    sha = check_sha(payload["new"])
    if any((state.job(job_id) or {}).get("sha") == sha for job_id in state.branch_jobs(repo, branch)):
        print(f"already queued: {branch} {sha[:12]} has jobs that are not final")
        return
    plan = plan_stages(declared_kinds(repo, sha))  # .trivialci/NN-KIND: KIND in stage NN (hub/stages.py)
    end_jobs(state, repo, branch, JobStatus.SUPERSEDED, f"a newer push to {branch}: {sha[:12]}", keep=sha)
    if not plan:
        print(f"nothing to build: {sha[:12]} has no executable files in .trivialci/")
        return
    trusted = is_trusted(request)
    package = {"repo": repo, "branch": branch, "sha": sha, "attempt": 1, "params": {}, "pr": request["pr"],
               "trusted": trusted, "author": request["author"], "head_repo": request["head_repo"],
               **forge_fields(payload, state.node_dir.spool)}
    for job in queue_push(state, plan, package, hold=None if trusted else hold_job):
        held = f" (a fork's pull request: trivialci approve {job['job']})" if job["status"] == JobStatus.HELD else ""
        print(f"{job['status'].lower()} {job['job']}: {branch} {sha[:12]} for {job['kind']} (stage {job['stage']})"
              + held)
    dispatch(state)
    boot_workers(state)


def is_trusted(request: dict) -> bool:
    """The trust decision: a branch of the repository itself, or an author on the list."""
    if not request["fork"] and TRUST_OWN_BRANCHES:
        return True
    return request["author"] in TRUSTED_AUTHORS


def declared_kinds(repo: str, sha: str) -> list[str]:
    """Executable files in .trivialci/ at the head commit, read from the hub's mirror (which fetches the PR refs)."""
    mirror = Mirror(os.environ["TRIVIALCI_WORKDIR"], repo)
    mirror.update()
    return [name for name in mirror.list_executables(sha, ".trivialci")
            if name[:1].isalnum() and all(c.isalnum() or c in "_-" for c in name)]


def end_jobs(state: HubState, repo: str, branch: str, status: JobStatus, reason: str, keep: str | None = None):
    """End the request's jobs that are not final (held and queued ones at once, running ones on their worker)."""
    for job_id in state.branch_jobs(repo, branch):
        job = state.job(job_id)
        if not job or job["sha"] == keep:
            continue
        if end_job(state, job, status, reason):
            print(f"{status.value.lower()} {job_id}: {reason}")


if __name__ == "__main__":
    try:
        main(json.load(sys.stdin))
    except TrivialCiError as refusal:
        sys.exit(f"refused: {refusal}")
