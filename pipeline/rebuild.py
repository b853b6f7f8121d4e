"""Hub: `trivialci rebuild JOB [--downstream]`. Queue a job that is over again, as a new job naming it.

The new job has the same repository, sha, kind and parameters, and the same push, stage and upstream
(it takes the artifacts its original took); "rebuild_of" names the original. With "downstream": true,
the later stages of its push are planned again after it, taking its artifacts (hub/stages.py).
A `trivialci rebuild --wait` names a request: its state/requests/REQ.json lists the new jobs.
"""

import json
import os
import sys

from trivialci import TrivialCiError
from trivialci.hub import HubState, boot_workers, check_rebuild, dispatch, rebuild_job, refuse_off_hub

refuse_off_hub("rebuild")  # a hub's event dropped into a worker's inbox changes nothing there

payload = json.load(sys.stdin)
state = HubState.open(os.environ["TRIVIALCI_SPOOL"])
try:
    payload = check_rebuild(payload)
    jobs = rebuild_job(state, payload["job"], downstream=payload.get("downstream") is True)
except TrivialCiError as refusal:
    if isinstance(payload, dict) and isinstance(payload.get("request"), str):
        try:
            state.write_request(payload["request"], [], f"not rebuilt: {refusal}")
        except TrivialCiError:
            pass  # a request id that names no file: the refusal of the event says why
    sys.exit(f"refused: {refusal}")
text = ", ".join(f"{job['job']} ({job['kind']}, {job['status']})" for job in jobs)
if payload.get("request"):
    state.write_request(payload["request"], [job["job"] for job in jobs], f"rebuilding {payload['job']}: {text}")
print(f"rebuilding {payload['job']}: {text}")
dispatch(state)
boot_workers(state)
