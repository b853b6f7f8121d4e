"""Worker: it just started. Ask the hub for work."""

import os

import trivialci

trivialci.emit("work_required", {"worker": os.environ["TRIVIALCI_WORKER"], "kind": os.environ["TRIVIALCI_KIND"]})
