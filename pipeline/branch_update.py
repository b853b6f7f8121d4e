"""Hub: a branch moved. Queue one job per worker kind its .trivialci/ declares.

Edit the two lists below to choose what is built and what is never cancelled.
A newer push of a branch supersedes its jobs that are still queued, and
cancels the running ones, except on protected branches.
"""

import fnmatch
import json
import os
import sys

from trivialci import TrivialCiError
from trivialci.forge import forge_fields
from trivialci.git import Mirror, check_branch, check_repo, check_sha
from trivialci.hub import (HubState, boot_workers, cancel_running, dispatch, end_queued, queue_job,
                           refresh_pipeline_if_source)
from trivialci.jobs import RUNNING, JobStatus, new_job_id

SKIPPED_BRANCHES = ["tmp/*"]  # never built
PROTECTED_BRANCHES = ["main", "master", "release/*"]  # every push is built to the end


def main(payload: dict) -> None:
    state = HubState.open(os.environ["TRIVIALCI_SPOOL"])
    try:
        repo, branch, sha = check_repo(payload["repo"]), check_branch(payload["branch"]), payload["new"]
        check_sha(sha)
    except TrivialCiError as refusal:
        note(state, payload, [], f"refused: {refusal}")
        raise
    if refresh_pipeline_if_source(payload):
        print(f"this hub's pipeline now runs the scripts of {branch} at {sha[:12]}")
    if any(fnmatch.fnmatchcase(branch, pattern) for pattern in SKIPPED_BRANCHES):
        note(state, payload, [], f"skipped: {branch} matches {SKIPPED_BRANCHES}")
        return
    if state.branch_sha(repo, branch) == sha and not payload.get("request"):  # a webhook and the poll saw it
        note(state, payload, [], f"already queued: {branch} {sha[:12]} (seen before, by a webhook or the poll)")
        return
    kinds = declared_kinds(repo, sha)
    if not kinds:
        note(state, payload, [], f"nothing to build: {sha[:12]} has no executable files in .trivialci/")
        return
    if not any(fnmatch.fnmatchcase(branch, pattern) for pattern in PROTECTED_BRANCHES):
        supersede(state, repo, branch, sha)
    queued = []
    for kind in kinds:
        job = queue_job(state, {"job": new_job_id(), "repo": repo, "branch": branch, "sha": sha,
                                "kind": kind, "attempt": 1, "params": payload.get("params", {}),
                                "request": payload.get("request"), **forge_fields(payload, state.node_dir.spool)})
        queued.append(job["job"])
    note(state, payload, queued, f"queued {', '.join(queued)}: {branch} {sha[:12]} for {', '.join(kinds)}")
    dispatch(state)
    boot_workers(state)


def note(state: HubState, payload: dict, job_ids: list[str], text: str) -> None:
    """Say what became of the push, and tell a waiting `trivialci build` (its request id)."""
    print(text)
    if isinstance(payload.get("request"), str) and payload["request"].isalnum():
        state.write_request(payload["request"], job_ids, text)


def declared_kinds(repo: str, sha: str) -> list[str]:
    """Executable files in .trivialci/ at that sha, read from the hub's own mirror."""
    mirror = Mirror(os.environ["TRIVIALCI_WORKDIR"], repo)
    mirror.update()
    return [name for name in mirror.list_executables(sha, ".trivialci") if _is_kind_name(name)]


def _is_kind_name(name: str) -> bool:
    return name[:1].isalnum() and all(c.isalnum() or c in "_-" for c in name)


def supersede(state: HubState, repo: str, branch: str, sha: str) -> None:
    for job_id in state.branch_jobs(repo, branch):
        job = state.job(job_id)
        if not job or job["sha"] == sha:
            continue
        if job["status"] == JobStatus.QUEUED:
            end_queued(state, job, JobStatus.SUPERSEDED, f"a newer push of {branch}: {sha[:12]}")
            print(f"superseded {job_id} (queued)")
        elif JobStatus(job["status"]) in RUNNING and job.get("worker"):
            cancel_running(state, job, JobStatus.SUPERSEDED, f"a newer push of {branch}: {sha[:12]}")
            print(f"superseding {job_id} (running on {job['worker']})")


if __name__ == "__main__":
    try:
        main(json.load(sys.stdin))
    except TrivialCiError as refusal:  # e.g. a hostile branch name: the reason goes to this event's log
        sys.exit(f"refused: {refusal}")
