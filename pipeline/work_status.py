"""Hub: a job changed. Fold the change into state/ (the job view and the queue)."""

import json
import os
import sys

from trivialci import TrivialCiError
from trivialci.hub import HubState

payload = json.load(sys.stdin)
try:
    job = HubState.open(os.environ["TRIVIALCI_SPOOL"]).apply("work_status", payload) or {}
except TrivialCiError as refusal:  # e.g. a job id that is not a file name: nothing is written
    sys.exit(f"refused: {refusal}")
print(f"{payload['job']}: {payload['status']} (now {job.get('status')}, attempt {job.get('attempt')})")
