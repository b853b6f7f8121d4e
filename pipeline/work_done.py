"""Hub: a worker finished a job (its final status came as work_status). Dispatch what waits."""

import json
import os
import sys

from trivialci import TrivialCiError
from trivialci.hub import HubState, check_work_done, dispatch, refuse_off_hub

refuse_off_hub("work_done")  # a hub's event dropped into a worker's inbox changes nothing there

try:
    payload = check_work_done(json.load(sys.stdin))
except TrivialCiError as refusal:
    sys.exit(f"refused: {refusal}")
print(f"{payload['worker']} finished {payload['job']}: {payload['status']}")
dispatch(HubState.open(os.environ["TRIVIALCI_SPOOL"]))
