"""Worker: stop a running job (cancelled, or superseded by a newer push).

stop_job checks the job id, the status (CANCELLED or SUPERSEDED) and the
reason, and writes the request; the start_work that runs the job stops its
own build (this script signals nothing).
"""

import json
import os
import sys
from pathlib import Path

from trivialci import TrivialCiError
from trivialci.jobs import check_attempt
from trivialci.worker import stop_job

payload = json.load(sys.stdin)
if "TRIVIALCI_WORKER" not in os.environ:  # dropped into the hub's inbox: its workdir holds no builds
    sys.exit(f"refused: cancel_work is a worker's event, and {os.environ['TRIVIALCI_NODE']} is no worker")
try:
    if payload.get("attempt") is not None:  # the request is for the job, whichever attempt of it runs here
        check_attempt(payload["attempt"])
    stopped = stop_job(Path(os.environ["TRIVIALCI_WORKDIR"]), payload.get("job"), payload.get("status"),
                       payload.get("reason"))
except TrivialCiError as refusal:
    sys.exit(f"refused: {refusal}")
print(f"{payload['job']}: {'stopping its build' if stopped else 'it will not build'} ({payload['reason']})")
