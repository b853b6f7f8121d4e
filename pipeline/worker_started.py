"""Worker: it just started. Ask the hub for work."""

import os
import sys

import trivialci

if "TRIVIALCI_WORKER" not in os.environ:  # dropped into the hub's inbox: the hub asks itself for nothing
    sys.exit(f"refused: worker_started is a worker's event, and {os.environ['TRIVIALCI_NODE']} is no worker")
trivialci.emit("work_required", {"worker": os.environ["TRIVIALCI_WORKER"], "kind": os.environ["TRIVIALCI_KIND"]})
