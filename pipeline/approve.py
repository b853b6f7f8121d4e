"""Hub: `trivialci approve JOB`. A HELD job (a fork's pull request) is queued, for the sha it was held for only."""

import json
import os
import sys

from trivialci import TrivialCiError
from trivialci.hub import HubState, approve_job, boot_workers, dispatch, refuse_off_hub

refuse_off_hub("approve")  # a hub's event dropped into a worker's inbox changes nothing there

payload = json.load(sys.stdin)
state = HubState.open(os.environ["TRIVIALCI_SPOOL"])
try:
    job = approve_job(state, payload.get("job"), payload.get("sha"), payload.get("by"))
except TrivialCiError as refusal:
    sys.exit(f"refused: {refusal}")
print(f"{job['job']} approved by {job['approval']['by']} for {job['sha'][:12]}: queued")
dispatch(state)
boot_workers(state)
