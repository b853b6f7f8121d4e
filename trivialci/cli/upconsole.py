"""What `trivialci up` prints: one line per job change a person wants to see, and warnings.

    main 3f9a61e build queued                  (once; told before the start, if it started between two looks)
    main 3f9a61e build started on build-1      (told before the end, if it ended between two looks)
    main 3f9a61e build PASSED 0.3s http://127.0.0.1:8080/jobs/20261202T074205Z-1a2b3c
    fix/x 1b2c3d4 build FAILED 1.2s (exit status 3) http://127.0.0.1:8080/jobs/...
    tmp/try 9e8f7a6: skipped: tmp/try matches ['tmp/*']
    warning: ...

The hub, the gitwatchers and the workers log every event they handle to one
file (up.log in the workdir); the console reads it for the lines marked
`warning:` or `error:`, and a command's one-line refusal (`Error: ...`, e.g. a
hub that another process runs already); all of it with --verbose. Job changes are read from the hub's
state/jobs/: the names are listed (not read) to find new jobs, and only the
records of jobs not yet final are read again, so a poll costs the same with
10,000 jobs as with 10. Pushes that queued nothing are read from the
branch_update events of today's done/, as the web UI's branches view reads them.
"""

import os
from pathlib import Path

from ..jobs import RUNNING, JobStatus
from ..spool.terminal import printable
from ..web.data import WebData, recent_days
from ..web.pushes import FINAL_WORDS, is_push_event

RUNNING_WORDS = {status.value for status in RUNNING}
NOT_YET_QUEUED = (None, JobStatus.WAITING.value, JobStatus.HELD.value)  # what was told of a job a worker took
NOT_YET_STARTED = (*NOT_YET_QUEUED, JobStatus.QUEUED.value)
LOG_NAME = "up.log"
SHOWN_STARTS = ("Error: ", "Traceback")  # a node that refused to start, or a bug: said on the console too
MAX_TAIL = 1 << 20  # bytes of the log copied to the console in one poll


class JobConsole:
    """Polled by `up` while it waits; prints through `say` (one line each)."""

    def __init__(self, spool: Path, ui_url: str | None, log_path: Path, say, verbose: bool = False):
        self.spool, self.ui_url, self.say, self.verbose = Path(spool), ui_url, say, verbose
        self.log_path, self.log_offset = log_path, _size(log_path)
        self.data = WebData(spool, None)
        self.known = set(self._names())  # jobs from before this start are not told again...
        self.told = {}
        self.active = {n for n in self.known if self._status(n) not in FINAL_WORDS}  # ...unless they change
        self.pushes_seen = set(self._push_events())

    def poll(self) -> None:
        self._tail_log()
        names = self._names()
        for name in sorted(names - self.known):
            self.known.add(name)
            self.active.add(name)
        for name in sorted(self.active):
            if name in names:
                self._tell(name)
            elif self.data.state_is_built():  # gone from a complete state/: removed by hand
                self.active.discard(name)
            # else state/ is being rebuilt (a person's `rm -r state/`): told once its record is back
        for where, day, name in sorted(set(self._push_events()) - self.pushes_seen):
            self.pushes_seen.add((where, day, name))
            self._tell_push(where, day, name)

    def _names(self) -> set:
        return {n[:-5] for n in self.data.names("state", "jobs") if n.endswith(".json")}

    def _status(self, name: str):
        return (self.data.job_record(name) or {}).get("status")

    def _tell(self, name: str) -> None:
        job = self.data.job_record(name)
        if job is None:
            return  # listed, not readable this instant (being replaced): the next look reads it
        status, before = job.get("status"), self.told.get(name)
        word = "started" if status in RUNNING_WORDS else status
        if job.get("worker") and before in NOT_YET_QUEUED and word != JobStatus.QUEUED.value:
            self.say(self.line(job, JobStatus.QUEUED.value))  # queued and handed over between two looks
        if word in FINAL_WORDS and before in NOT_YET_STARTED and job.get("worker"):
            self.say(self.line(job, "started"))  # it started and ended between two looks
        if word != before and not (word == "started" and before in FINAL_WORDS):
            self.told[name] = word
            self.say(self.line(job, word))
        if status in FINAL_WORDS:
            self.active.discard(name)

    def line(self, job: dict, word: str) -> str:
        """One line for a job's change: branch, short sha, kind, what happened."""
        sha = job.get("sha") if isinstance(job.get("sha"), str) else ""
        head = f"{job.get('branch')} {sha[:7]} {job.get('kind')}"
        if word == JobStatus.QUEUED.value:
            return printable(f"{head} queued")
        if word == "started":
            return printable(f"{head} started on {job.get('worker')}")
        if word == "WAITING":
            return printable(f"{head} waits for an earlier stage (stage {job.get('stage')})")
        if word == JobStatus.HELD.value:
            return printable(f"{head} HELD: it runs once approved: trivialci approve {job.get('job')}")
        run_time = job.get("run_time")
        took = f" {run_time:.1f}s" if isinstance(run_time, (int, float)) and not isinstance(run_time, bool) else ""
        why = f" ({job.get('reason')})" if word != JobStatus.PASSED.value and job.get("reason") else ""
        link = f" {self.ui_url.rstrip('/')}/jobs/{job.get('job')}" if self.ui_url else f" ({job.get('job')})"
        return printable(f"{head} {word}{took}{why}{link}")

    def _push_events(self):
        day = recent_days()[0]
        return [(where, day, name) for where in ("done", "failed") for name in self.data.names(where, day)
                if is_push_event(name)]

    def _tell_push(self, where: str, day: str, name: str) -> None:
        note = self.data.push_note(where, day, name)
        if note and note["kind"] not in ("queued", "already queued"):
            sha = note["sha"][:7] if isinstance(note["sha"], str) else ""
            self.say(printable(f"{note['branch']} {sha}: {note['text']}"))
            if note["hint"]:
                self.say(printable(f"  hint: {note['hint']}"))

    def _tail_log(self) -> None:
        """The log's new lines: all of them with --verbose, else the warnings."""
        try:
            with open(self.log_path, "rb") as log:
                log.seek(self.log_offset)
                data = log.read(MAX_TAIL)
        except OSError:
            return
        end = data.rfind(b"\n") + 1
        self.log_offset += end
        for line in data[:end].decode("utf-8", "replace").splitlines():
            if self.verbose or "warning:" in line.lower() or line.startswith(SHOWN_STARTS):
                self.say(line)


def log_file(workdir: Path) -> Path:
    """Where up's nodes log: WORKDIR/up.log (appended to, run after run)."""
    os.makedirs(workdir, exist_ok=True)
    return Path(workdir) / LOG_NAME


def _size(path: Path) -> int:
    try:
        return os.stat(path).st_size
    except OSError:
        return 0


