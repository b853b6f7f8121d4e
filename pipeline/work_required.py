"""Hub: a worker asks for work. It is noted as idle and handed the oldest job of its kind."""

import json
import os
import sys

from trivialci import scheduling
from trivialci.hubstate import HubState

payload = json.load(sys.stdin)
state = HubState.open(os.environ["TRIVIALCI_SPOOL"])
if not scheduling.worker_ready(state, payload):
    print(f"{payload['worker']} is still busy with its job; this request is stale")
for worker, job in scheduling.dispatch(state):
    print(f"handed {job} to {worker}")
