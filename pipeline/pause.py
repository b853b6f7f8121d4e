"""Hub: dispatch is paused: `trivialci emit pause '{"reason": "..."}'`, or the tick saw a state/PAUSE made by hand.

Nothing is dispatched until a `resume` (or `rm state/PAUSE`); this event in done/
is what pauses dispatch again when state/ is rebuilt.
"""

import json
import os
import sys

from trivialci.hub import HubState, refuse_off_hub

refuse_off_hub("pause")  # a hub's event dropped into a worker's inbox changes nothing there

payload = json.load(sys.stdin)
HubState.open(os.environ["TRIVIALCI_SPOOL"]).apply("pause", payload)
print(f"dispatch paused: {payload.get('reason') or 'no reason given'}")
