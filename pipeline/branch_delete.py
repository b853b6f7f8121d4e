"""Hub: a branch was deleted. Its queued and running jobs are cancelled."""

import json
import os
import sys

from trivialci import TrivialCiError
from trivialci.git import check_branch, check_repo
from trivialci.hub import HubState, end_job, refuse_off_hub
from trivialci.jobs import JobStatus

refuse_off_hub("branch_delete")  # a hub's event dropped into a worker's inbox changes nothing there


def main(payload: dict) -> None:
    repo, branch = check_repo(payload.get("repo")), check_branch(payload.get("branch"))
    state = HubState.open(os.environ["TRIVIALCI_SPOOL"])
    state.forget_branch_sha(repo, branch)  # a push that brings the branch back is built, even at the same sha
    for job_id in state.branch_jobs(repo, branch):
        job = state.job(job_id)
        reason = f"branch {branch} was deleted"
        if job and end_job(state, job, JobStatus.CANCELLED, reason):
            print(f"cancelled {job_id}: {reason}")


if __name__ == "__main__":
    try:
        main(json.load(sys.stdin))
    except TrivialCiError as refusal:
        sys.exit(f"refused: {refusal}")
