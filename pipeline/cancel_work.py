"""Worker: stop a running job (cancelled, or superseded by a newer push)."""

import json
import os
import sys
from pathlib import Path

from trivialci.worker import stop_job

payload = json.load(sys.stdin)
stopped = stop_job(Path(os.environ["TRIVIALCI_WORKDIR"]), payload["job"], payload["status"], payload["reason"])
print(f"{payload['job']}: {'stopping its build' if stopped else 'it will not build'} ({payload['reason']})")
