"""Hub: the hub noted a worker as idle or lost (it applied that already; this keeps state/ right after a rebuild)."""

import json
import os
import sys

from trivialci import TrivialCiError
from trivialci.hub import HubState, refuse_off_hub

refuse_off_hub("worker_status")  # a hub's event dropped into a worker's inbox changes nothing there

payload = json.load(sys.stdin)
try:
    HubState.open(os.environ["TRIVIALCI_SPOOL"]).apply("worker_status", payload)
except TrivialCiError as refusal:  # e.g. a worker name that is not a file name: nothing is written
    sys.exit(f"refused: {refusal}")
print(f"{payload.get('worker')}: {payload.get('state')} ({payload.get('reason')})")
