"""Hub: `trivialci cancel JOB`. A queued job is dropped; a running one is stopped on its worker."""

import json
import os
import sys

from trivialci import TrivialCiError
from trivialci.hub import HubState, end_job, refuse_off_hub
from trivialci.jobs import JobStatus, check_job_id

refuse_off_hub("cancel")  # a hub's event dropped into a worker's inbox changes nothing there

payload = json.load(sys.stdin)
try:
    job_id = check_job_id(payload.get("job"))
except TrivialCiError as refusal:
    sys.exit(f"refused: {refusal}")
state = HubState.open(os.environ["TRIVIALCI_SPOOL"])
job = state.job(job_id)
if job is None:
    sys.exit(f"no job {job_id} in this hub's state")
if end_job(state, job, JobStatus.CANCELLED, "cancelled by request"):
    print(f"{job['job']} was {job['status']}: cancelling")
else:
    print(f"{job['job']} is over ({job['status']}): nothing to cancel")
