"""Hub: a worker asks for work. It is noted as idle and handed the oldest job of its kind."""

import json
import os
import sys

from trivialci import TrivialCiError
from trivialci.hub import HubState, dispatch, refuse_off_hub, worker_ready

refuse_off_hub("work_required")  # a hub's event dropped into a worker's inbox changes nothing there

payload = json.load(sys.stdin)
state = HubState.open(os.environ["TRIVIALCI_SPOOL"])
try:
    if not worker_ready(state, payload):  # it checks every field first
        print(f"{payload['worker']} is still busy with its job; this request is stale")
except TrivialCiError as refusal:  # e.g. a worker name that is not a file name: nothing is written
    sys.exit(f"refused: {refusal}")
for worker, job in dispatch(state, [payload["worker"]]):  # to this worker: no other's file needs reading
    print(f"handed {job} to {worker}")
