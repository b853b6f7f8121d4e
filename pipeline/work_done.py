"""Hub: a worker finished a job (its final status came as work_status). Dispatch what waits."""

import json
import os
import sys

from trivialci.hub import HubState, dispatch

payload = json.load(sys.stdin)
print(f"{payload['worker']} finished {payload['job']}: {payload['status']}")
dispatch(HubState.open(os.environ["TRIVIALCI_SPOOL"]))
