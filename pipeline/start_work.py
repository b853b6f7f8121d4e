"""Worker: build one job.

Fetch the mirror, `git worktree add --detach` at the exact sha, run the
repository's `.trivialci/KIND` there with a timeout, upload `log.txt`,
`files/` (what the build put in $TRIVIALCI_ARTIFACTS) and `job.json` to the
artifact store, report each step to the hub as work_status, then work_done,
remove the worktree, and ask for more work. Once a day, after a job, clean the
worker's own disk (leftover worktrees, ended logs, git gc --auto, mirrors no job
used for KEEP_MIRROR_DAYS days).
"""

import json
import os
import sys
from pathlib import Path

import trivialci
from trivialci.worker import JobRun, clean_workdir

KEEP_MIRROR_DAYS = 30  # a mirror of a repository nobody built for this long goes
KEEP_LOG_DAYS = 1  # a job's log stays on this disk this long after it ended (the store keeps it)
CLEAN_EVERY_HOURS = 24

payload = json.load(sys.stdin)
job = JobRun(payload, worker=os.environ["TRIVIALCI_WORKER"], workdir=Path(os.environ["TRIVIALCI_WORKDIR"]),
             spool=os.environ["TRIVIALCI_SPOOL"], store_url=os.environ.get("TRIVIALCI_STORE"))
try:
    if job.is_stale():
        print(f"{job.id}: the hub no longer expects this attempt from this worker; skipped")
    else:
        job.run()
        print(f"{job.id}: {job.record['status']} ({job.record.get('reason')})")
finally:
    trivialci.emit("work_required", {"worker": job.worker, "kind": os.environ["TRIVIALCI_KIND"], "after": job.id,
                                     "attempt": job.package["attempt"]})
try:
    for line in clean_workdir(job.workdir, KEEP_MIRROR_DAYS, KEEP_LOG_DAYS, CLEAN_EVERY_HOURS * 3600):
        print(line)
except OSError as error:  # the job is recorded and more work asked for already: say it, and go on
    print(f"could not clean {job.workdir}: {error}")
