"""Worker: build one job.

Fetch the mirror, `git worktree add --detach` at the exact sha, run the
repository's `.trivialci/KIND` there with a timeout, upload `log.txt`,
`files/` (what the build put in $TRIVIALCI_ARTIFACTS) and `job.json` to the
artifact store, report each step to the hub as work_status, then work_done,
remove the worktree, and ask for more work.
"""

import json
import os
import sys
from pathlib import Path

import trivialci
from trivialci.worker import JobRun

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
