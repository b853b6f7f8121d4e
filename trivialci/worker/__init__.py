"""The worker's side of a job: checkout, build, log, upload, report.

A `JobRun` takes one start_work package from checkout to record on the
worker's own disk (jobrun.py); the build's output is copied line by line with
timestamps into the log the log server follows (buildlog.py). `stop_job`
asks a running build to stop; `clean_workdir` keeps the worker's own disk
bounded (diskcleanup.py). `check_start_work` checks a start_work package
field by field (package.py); `refuse_start_work` reports a refused one that the
hub expects from this worker as FAILED. docs/scripting.md documents what is exported here.

It may import the hub (to read whether an attempt is still expected), the git
layer, the stores, the spool layer, trivialci.jobs and trivialci.errors;
never the web or the CLI.
"""

from .diskcleanup import clean_workdir
from .jobrun import JobRun
from .jobrun import stop as stop_job
from .package import check_start_work, refuse_start_work

__all__ = ["JobRun", "check_start_work", "clean_workdir", "refuse_start_work", "stop_job"]
