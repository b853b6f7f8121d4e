"""Hub: a job changed. Fold the change into state/ (the job view and the queue); tell its forge, if it has one.

A job of a push in stages that ended hands over to the later stages (hub/stages.py): the jobs waiting for it
are queued once all they wait for PASSED, or SKIPPED with the reason.
"""

import json
import os
import sys

from trivialci import TrivialCiError
from trivialci.hub import HubState, advance_stages, boot_workers, dispatch, refuse_off_hub, report_change

refuse_off_hub("work_status")  # a hub's event dropped into a worker's inbox changes nothing there

payload = json.load(sys.stdin)
try:
    state = HubState.open(os.environ["TRIVIALCI_SPOOL"])
    job = state.apply("work_status", payload) or {}
    report_change(state, job, payload)  # a commit_status event, when a forge shows this job
    handed = advance_stages(state, job)
except TrivialCiError as refusal:  # e.g. a job id that is not a file name: nothing is written
    sys.exit(f"refused: {refusal}")
print(f"{payload['job']}: {payload['status']} (now {job.get('status')}, attempt {job.get('attempt')})")
for line in handed:
    print(line)
if handed:  # a later stage queued: hand it out now, not at the next work_done
    dispatch(state)
    boot_workers(state)
