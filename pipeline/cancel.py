"""Hub: `trivialci cancel JOB`. A queued job is dropped; a running one is stopped on its worker."""

import json
import os
import sys

from trivialci.hub import HubState, cancel_running, end_queued
from trivialci.jobs import RUNNING, JobStatus

payload = json.load(sys.stdin)
state = HubState.open(os.environ["TRIVIALCI_SPOOL"])
job = state.job(payload["job"])
if job is None:
    sys.exit(f"no job {payload['job']!r} in this hub's state")
if job["status"] == JobStatus.QUEUED:
    end_queued(state, job, JobStatus.CANCELLED, "cancelled by request")
elif JobStatus(job["status"]) in RUNNING:
    cancel_running(state, job, JobStatus.CANCELLED, "cancelled by request")
print(f"{job['job']} was {job['status']}: cancelling")
