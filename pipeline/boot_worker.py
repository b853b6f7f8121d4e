"""Hub: start a worker of a kind: here, detached, or over ssh on the host TRIVIALCI_BOOT_HOSTS names for it.

See trivialci/hub/boot.py for the configuration. Here, the worker outlives this
script: it starts in a session of its own, without this event's TRIVIALCI_*
variables (their marks would let a timeout of this event stop it), its output
in SPOOL/workers/NAME.log. To boot workers some other way (a cloud API),
replace this script: the hub only waits for the worker's heartbeat.
"""

import json
import sys

from trivialci import TrivialCiError
from trivialci.hub import boot_worker, refuse_off_hub

refuse_off_hub("boot_worker")  # a hub's event dropped into a worker's inbox changes nothing there

payload = json.load(sys.stdin)
try:
    print(boot_worker(payload.get("kind"), payload.get("name")))  # both are checked there
except TrivialCiError as error:
    sys.exit(f"not booted: {error}")
