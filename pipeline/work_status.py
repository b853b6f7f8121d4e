"""Hub: a job changed. Fold the change into state/ (the job view and the queue); tell its forge, if it has one."""

import json
import os
import sys

from trivialci import TrivialCiError
from trivialci.hub import HubState, refuse_off_hub, report_change

refuse_off_hub("work_status")  # a hub's event dropped into a worker's inbox changes nothing there

payload = json.load(sys.stdin)
try:
    state = HubState.open(os.environ["TRIVIALCI_SPOOL"])
    job = state.apply("work_status", payload) or {}
    report_change(state, job, payload)  # a commit_status event, when a forge shows this job
except TrivialCiError as refusal:  # e.g. a job id that is not a file name: nothing is written
    sys.exit(f"refused: {refusal}")
print(f"{payload['job']}: {payload['status']} (now {job.get('status')}, attempt {job.get('attempt')})")
