"""Hub: a worker asks for work. It is noted as idle and handed the oldest job of its kind."""

import json
import os
import sys

from trivialci import TrivialCiError, scheduling
from trivialci.hubstate import HubState

payload = json.load(sys.stdin)
state = HubState.open(os.environ["TRIVIALCI_SPOOL"])
try:
    if not scheduling.worker_ready(state, payload):
        print(f"{payload['worker']} is still busy with its job; this request is stale")
except TrivialCiError as refusal:  # e.g. a worker name that is not a file name: nothing is written
    sys.exit(f"refused: {refusal}")
for worker, job in scheduling.dispatch(state):
    print(f"handed {job} to {worker}")
