"""Hub: start a worker of a kind, here, detached. Replace this script to boot one elsewhere.

The worker outlives this script: it starts in a session of its own, without
this event's TRIVIALCI_* variables (their marks would let a timeout of this
event stop it), its output in SPOOL/workers/NAME.log. It beats six times
within the hub's LOST_AFTER, so a live worker is never taken for lost.
"""

import json
import os
import subprocess
import sys

from trivialci.scheduling import LOST_AFTER

PER_EVENT = {"EVENT", "EVENT_ID", "EVENT_FILE", "ATTEMPT", "LOG", "NODE", "NODE_DIR", "SPOOL", "PIPELINE", "KIND",
             "WORKER", "STORE", "WORKDIR", "UI_URL", "LOG_URL", "OUTBOX"}

payload = json.load(sys.stdin)
spool, name, kind = os.environ["TRIVIALCI_SPOOL"], payload["name"], payload["kind"]
workdir = os.path.join(os.path.dirname(os.environ["TRIVIALCI_WORKDIR"]), name)
command = [sys.executable, "-m", "trivialci", "worker", "--spool", spool, "--name", name, "--kind", kind,
           "--jobs", "2", "--workdir", workdir, "--pipeline", os.environ["TRIVIALCI_PIPELINE"],
           "--heartbeat", str(max(0.2, LOST_AFTER / 6))]
if os.environ.get("TRIVIALCI_STORE"):
    command += ["--store", os.environ["TRIVIALCI_STORE"]]
if os.environ.get("TRIVIALCI_UI_URL"):  # finished jobs' log links lead to the hub's page of the job
    command += ["--hub-ui", os.environ["TRIVIALCI_UI_URL"]]
environment = {k: v for k, v in os.environ.items() if not (k.startswith("TRIVIALCI_") and k[10:] in PER_EVENT)}
os.makedirs(os.path.join(spool, "workers"), exist_ok=True)
with open(os.path.join(spool, "workers", f"{name}.log"), "ab") as log:
    worker = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=environment,
                              start_new_session=True)
print(f"started worker {name} ({kind}), pid {worker.pid}: {' '.join(command)}")
