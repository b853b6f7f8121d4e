"""Hub: a job changed. Fold the change into state/ (the job view and the queue)."""

import json
import os
import sys

from trivialci.hubstate import HubState

payload = json.load(sys.stdin)
job = HubState.open(os.environ["TRIVIALCI_SPOOL"]).apply_status(payload)
print(f"{payload['job']}: {payload['status']} (now {job.get('status')}, attempt {job.get('attempt')})")
