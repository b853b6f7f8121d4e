"""Hub: dispatch goes on: `trivialci emit resume '{}'`, or the tick saw state/PAUSE removed by hand."""

import json
import os
import sys

from trivialci.hub import HubState, dispatch, refuse_off_hub

refuse_off_hub("resume")  # a hub's event dropped into a worker's inbox changes nothing there

payload = json.load(sys.stdin)
state = HubState.open(os.environ["TRIVIALCI_SPOOL"])
state.apply("resume", payload)
print(f"dispatch resumed: {payload.get('reason') or 'no reason given'}")
for worker, job in dispatch(state):
    print(f"handed {job} to {worker}")
