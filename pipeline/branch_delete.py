"""Hub: a branch was deleted. Its queued and running jobs are cancelled."""

import json
import os
import sys

from trivialci import TrivialCiError, git, scheduling
from trivialci.hubstate import HubState
from trivialci.jobs import RUNNING, JobStatus


def main(payload: dict) -> None:
    repo, branch = git.check_repo(payload["repo"]), git.check_branch(payload["branch"])
    state = HubState.open(os.environ["TRIVIALCI_SPOOL"])
    for job_id in state.branch_jobs(repo, branch):
        job = state.job(job_id)
        reason = f"branch {branch} was deleted"
        if job and job["status"] == JobStatus.QUEUED:
            scheduling.end_queued(state, job, JobStatus.CANCELLED, reason)
        elif job and JobStatus(job["status"]) in RUNNING:
            scheduling.cancel_running(state, job, JobStatus.CANCELLED, reason)
        print(f"cancelled {job_id}: {reason}")


if __name__ == "__main__":
    try:
        main(json.load(sys.stdin))
    except TrivialCiError as refusal:
        sys.exit(f"refused: {refusal}")
