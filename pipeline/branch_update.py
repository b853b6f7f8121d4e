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
from trivialci.git import Mirror
from trivialci.hub import (TRUST_FIELDS, HubState, boot_workers, check_branch_update, dispatch, end_job, plan_stages,
                           queue_push, refresh_pipeline_if_source, refuse_off_hub)
from trivialci.jobs import JobStatus, is_kind

refuse_off_hub("branch_update")  # a hub's event dropped into a worker's inbox changes nothing there

SKIPPED_BRANCHES = ["tmp/*"]  # never built
PROTECTED_BRANCHES = ["main", "master", "release/*"]  # every push is built to the end


def main(payload: dict) -> None:
    state = HubState.open(os.environ["TRIVIALCI_SPOOL"])
    try:  # every field, with its grammar, type and range: repo, branch, old, new, params, request
        payload = check_branch_update(payload)
    except TrivialCiError as refusal:
        tell_request(state, payload, [], f"refused: {refusal}")  # the one line of the log comes from sys.exit
        raise
    repo, branch, sha = payload["repo"], payload["branch"], payload["new"]
    if refresh_pipeline_if_source(payload):
        print(f"this hub's pipeline now runs the scripts of {branch} at {sha[:12]}")
    if any(fnmatch.fnmatchcase(branch, pattern) for pattern in SKIPPED_BRANCHES):
        note(state, payload, [], f"skipped: {branch} matches {SKIPPED_BRANCHES}")
        return
    if state.branch_sha(repo, branch) == sha and not payload.get("request"):  # a webhook and the poll saw it
        note(state, payload, [], f"already queued: {branch} {sha[:12]} (seen before, by a webhook or the poll)")
        return
    try:  # [(stage, kind)]: .trivialci/NN-KIND runs in stage NN; a kind named twice refuses the push
        plan = plan_stages(declared_kinds(repo, sha))
    except TrivialCiError as refusal:
        tell_request(state, payload, [], f"not built: {refusal}")
        raise
    if not plan:
        note(state, payload, [], f"nothing to build: {sha[:12]} has no executable files in .trivialci/")
        return
    if not any(fnmatch.fnmatchcase(branch, pattern) for pattern in PROTECTED_BRANCHES):
        supersede(state, repo, branch, sha)
    jobs = queue_push(state, plan, {"repo": repo, "branch": branch, "sha": sha,
                                    "attempt": 1, "params": payload["params"],
                                    "request": payload.get("request"), **trust_of(payload),
                                    **Mirror(os.environ["TRIVIALCI_WORKDIR"], repo).describe(sha),
                                    **forge_fields(payload, state.node_dir.spool)})
    queued = [job["job"] for job in jobs]
    note(state, payload, queued, f"queued {', '.join(queued)}: {branch} {sha[:12]} for "
                                 f"{', '.join(stage_names(jobs))}")
    dispatch(state)
    boot_workers(state)


def note(state: HubState, payload: dict, job_ids: list[str], text: str) -> None:
    """Say what became of the push, and tell a waiting `trivialci build` (its request id)."""
    print(text)
    tell_request(state, payload, job_ids, text)


def tell_request(state: HubState, payload: dict, job_ids: list[str], text: str) -> None:
    if payload.get("request") is not None:
        try:
            state.write_request(payload["request"], job_ids, text)
        except TrivialCiError:
            pass  # a refused request id names no file: the refusal of the event says why


def trust_of(payload: dict) -> dict:
    """"trusted" and "approval" as the push gave them (a fork's pull request: "trusted": false); the worker
    judges them (no secrets unless trusted, or approved with "secrets": true)."""
    return {field: payload[field] for field in TRUST_FIELDS if field in payload}


def stage_names(jobs: list[dict]) -> list[str]:
    """build, test (stage 10), ...: what each job runs, and when."""
    return [job["kind"] + (f" (stage {job['stage']})" if job["stage"] != jobs[0]["stage"] else "") for job in jobs]


def declared_kinds(repo: str, sha: str) -> list[str]:
    """Executable files in .trivialci/ at that sha, read from the hub's own mirror (NN-KIND: KIND in stage NN)."""
    mirror = Mirror(os.environ["TRIVIALCI_WORKDIR"], repo)
    mirror.update()
    return [name for name in mirror.list_executables(sha, ".trivialci") if is_kind(name)]


def supersede(state: HubState, repo: str, branch: str, sha: str) -> None:
    for job_id in state.branch_jobs(repo, branch):
        job = state.job(job_id)
        if not job or job["sha"] == sha:
            continue
        # queued, waiting for an earlier stage, or running: the whole chain goes
        if end_job(state, job, JobStatus.SUPERSEDED, f"a newer push of {branch}: {sha[:12]}"):
            print(f"superseded {job_id} ({job['status'].lower()}{' on ' + job['worker'] if job.get('worker') else ''})")


if __name__ == "__main__":
    try:
        main(json.load(sys.stdin))
    except TrivialCiError as refusal:  # e.g. a hostile branch name: the reason goes to this event's log
        sys.exit(f"refused: {refusal}")
