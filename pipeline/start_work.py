"""Worker: build one job.

Fetch the mirror, `git worktree add --detach` at the exact sha, run the
repository's `.trivialci/KIND` there with a timeout, upload `log.txt`,
`files/` (what the build put in $TRIVIALCI_ARTIFACTS) and `job.json` to the
artifact store, report each step to the hub as work_status, then work_done,
remove the worktree, and ask for more work. Once a day, after a job, clean the
worker's own disk (leftover worktrees, ended logs, git gc --auto, mirrors no job
used for KEEP_MIRROR_DAYS days).

A package that breaks a field's grammar (a job id or kind that is not a file
name, a timeout out of range...) or is for another kind is refused: nothing is
checked out or run, and if the hub expects that very attempt from this worker
the job is reported FAILED with the reason, so that it ends and the worker is
free again.
"""

import json
import os
import sys
from pathlib import Path

import trivialci
from trivialci import TrivialCiError
from trivialci.worker import JobRun, clean_workdir, refuse_start_work

KEEP_MIRROR_DAYS = 30  # a mirror of a repository nobody built for this long goes
KEEP_LOG_DAYS = 1  # a job's log stays on this disk this long after it ended (the store keeps it)
CLEAN_EVERY_HOURS = 24

payload = json.load(sys.stdin)
if "TRIVIALCI_WORKER" not in os.environ:  # dropped into the hub's inbox
    sys.exit(f"refused: start_work is a worker's event, and {os.environ['TRIVIALCI_NODE']} is no worker")
worker, kind, spool = os.environ["TRIVIALCI_WORKER"], os.environ["TRIVIALCI_KIND"], os.environ["TRIVIALCI_SPOOL"]
try:
    job = JobRun(payload, worker=worker, workdir=Path(os.environ["TRIVIALCI_WORKDIR"]), spool=spool,
                 store_url=os.environ.get("TRIVIALCI_STORE"), kind=kind)
except TrivialCiError as refusal:
    if refuse_start_work(payload, worker, spool, refusal):
        trivialci.emit("work_required", {"worker": worker, "kind": kind, "after": payload["job"],
                                         "attempt": payload["attempt"]})
    sys.exit(f"refused: {refusal}")
try:
    if job.is_stale():
        print(f"{job.id}: the hub no longer expects this attempt from this worker; skipped")
    else:
        job.run()
        print(f"{job.id}: {job.record['status']} ({job.record.get('reason')})")
finally:
    trivialci.emit("work_required", {"worker": worker, "kind": kind, "after": job.id,
                                     "attempt": job.package["attempt"]})
try:
    for line in clean_workdir(job.workdir, KEEP_MIRROR_DAYS, KEEP_LOG_DAYS, CLEAN_EVERY_HOURS * 3600):
        print(line)
except OSError as error:  # the job is recorded and more work asked for already: say it, and go on
    print(f"could not clean {job.workdir}: {error}")
