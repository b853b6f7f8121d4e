"""The hub's state: plain files under SPOOL/state/, derived from the event log.

    state/queue/KIND/TIME.JOB.json a work package waiting (TIME: when it was queued, to the
                                   millisecond); `ls` shows the order, `rm` dequeues
    state/jobs/JOB.json            the job view: the last known status of every job
    state/workers/NAME.json        workers seen: {name, kind, state: idle|busy|lost, job, since}
    state/branches/KEY.json        {repo, branch, jobs}: the jobs of a branch not yet final
    state/requests/REQ.json        the jobs queued for one `trivialci build` request
    state/PAUSE                    while it exists, nothing is dispatched
    state/paused.json              {reason, since}: dispatch is paused as far as the event log goes (pause.py)
    state/.built                   written once the files above are complete

Every change of a job is a `work_status` event, a worker asking for work is a
`work_required` event, every other change of a worker record a `worker_status`
event, and pausing and resuming are `pause` and `resume` events; `apply` folds
one of them into these files. The hub applies a change at once (so two scripts
never hand out one package) and also emits it, so that done/ holds every change
(eventlog.py: in the order it was applied). Deleting state/ loses nothing: the
next HubState.open() restores SPOOL/checkpoint.json (the fold of the days a prune
removed from done/, see checkpoint.py), then replays the days of done/ after it
through the same `apply`. What a person changes by hand is recorded as events
too (handedits.py), so a rebuilt state equals the state it replaced.
"""

import hashlib
import json
import os
import re
import shutil
import time
from pathlib import Path

from . import checkpoint, eventlog, pause
from ..spool.atomic import remove_if_present, write_atomically
from ..errors import BadInput
from ..jobs import FINAL, RUNNING, JobStatus, iso_now, seconds_between
from ..spool.layout import hub_dir

REPLAYED = ("work_status", "work_required", "worker_status", "pause", "resume")
WORKER_STATES = ("idle", "lost")  # what a worker_status event may say; `busy` follows from the job handed over
SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,62}\Z")  # event values that become file names
RANK = {JobStatus.QUEUED: 0, JobStatus.STARTING: 1, JobStatus.BUILDING: 2}


class HubState:
    def __init__(self, spool, root=None, staging=None):
        """The state of the hub of `spool`, in state/ (or in `root`, staging its writes in `staging`)."""
        self.node_dir = hub_dir(spool)
        self.root = Path(root) if root is not None else self.node_dir.state
        self.staging = Path(staging) if staging is not None else self.node_dir.tmp

    @classmethod
    def open(cls, spool) -> "HubState":
        """The state of the hub of `spool`, rebuilt from done/ first if it is missing."""
        state = cls(spool)
        if not (state.root / ".built").exists():
            state.rebuild()
        return state

    # --- reading ----------------------------------------------------------

    def job(self, job_id: str) -> dict | None:
        return _read_json(self.root / "jobs" / f"{job_id}.json")

    def queued(self, kind: str) -> list[str]:
        """Job ids waiting for a worker of `kind`, oldest first."""
        names = sorted(name for name in _list(self.root / "queue" / kind) if name.endswith(".json"))
        return [name.split(".")[1] for name in names if name.count(".") == 2]

    def queued_kinds(self) -> list[str]:
        return sorted(_list(self.root / "queue"))

    def worker(self, name: str) -> dict | None:
        return _read_json(self.root / "workers" / f"{name}.json")

    def workers(self) -> list[dict]:
        return [w for w in (self.worker(n[:-5]) for n in sorted(_list(self.root / "workers"))) if w]

    def branch_jobs(self, repo: str, branch: str) -> list[str]:
        record = _read_json(self.root / "branches" / f"{_branch_key(repo, branch)}.json") or {}
        return record.get("jobs", [])

    def recent_jobs(self, limit: int) -> list[dict]:
        """The newest `limit` jobs; reads only their files."""
        names = sorted(_list(self.root / "jobs"))[-limit:]
        return [j for j in (self.job(n[:-5]) for n in reversed(names)) if j]

    def request(self, request_id: str) -> dict | None:
        """What `trivialci build` asked for: {request, jobs, note}, written by branch_update."""
        return _read_json(self.root / "requests" / f"{request_id}.json")

    def write_request(self, request_id: str, job_ids: list[str], note: str) -> None:
        self._write(self.root / "requests" / f"{request_id}.json", {"request": request_id, "jobs": job_ids,
                                                                    "note": note})

    def paused(self) -> bool:
        return (self.root / "PAUSE").exists()

    # --- the fold ---------------------------------------------------------

    def apply(self, event_type: str, payload: dict, at: str | None = None):
        """Fold one event of REPLAYED into the files (idempotent); `at`: when the hub handled it [now]."""
        if at is None and self._applied_already(payload):
            return self.job(payload["job"]) if event_type == "work_status" else None
        at, payload = at or eventlog.applied_at(), eventlog.without_cause(payload)
        if event_type == "work_status":
            return self.apply_status(payload, at)
        if event_type == "work_required":
            name = check_name(payload.get("worker"), "worker name")
            if self.unfinished_job(name, payload) is None:
                self.set_worker(name, payload.get("kind", ""), "idle", None, at)
        elif event_type == "worker_status":
            if payload.get("state") not in WORKER_STATES:
                raise BadInput(f"bad worker state {payload.get('state')!r}: one of {', '.join(WORKER_STATES)}")
            self.set_worker(payload.get("worker"), payload.get("kind", ""), payload["state"], None, at)
        elif event_type in ("pause", "resume"):
            pause.apply(self, event_type, payload, at)
        return None

    def _applied_already(self, payload: dict) -> bool:
        """Whether a change the hub recorded (eventlog.record), now handled, was applied: when it was recorded,
        or by a rebuild since (which takes the recorded changes still in inbox/ and work/). Applying it again
        would undo what came after it: a worker record is the last word on it."""
        cause = payload.get(eventlog.CAUSE)
        return isinstance(cause, str) and cause != eventlog.current_event_id()

    def unfinished_job(self, name: str, payload: dict) -> dict | None:
        """The running job handed to worker `name` that its work_required (`payload`) does not say it finished.

        While there is one, the request changes nothing: it is an echo of the past, or (when the
        worker's process changed) the hub records the job as lost and the worker as idle itself.
        """
        current = self.worker(name)
        job = self.job(current["job"]) if current and current["state"] == "busy" and current.get("job") else None
        if job and JobStatus(job["status"]) in RUNNING and job.get("worker") == name:
            return None if (payload.get("after"), payload.get("attempt")) == (job["job"], job["attempt"]) else job
        return None

    def apply_status(self, update: dict, at: str | None = None) -> dict:
        """Merge a status change into its job, unless it is older than what is known."""
        update = eventlog.without_cause(update)
        current = self.job(check_name(update.get("job"), "job id")) or {}
        if not _is_news(current, update):
            return current
        job = _merged(current, update)
        if job == current:
            return current  # applied already (live, then when handled): a person's rm of its entry stands
        check_name(job.get("kind"), "kind")
        if job.get("worker") is not None:
            check_name(job["worker"], "worker name")
        queued = job["status"] == JobStatus.QUEUED
        if queued:  # the entry before the job: jobs/ says QUEUED only while its entry exists (handedits.py)
            self._file_queue_entry(job)
        self._file_branch_entry(job)
        if JobStatus(job["status"]) in RUNNING and job.get("worker"):
            self.set_worker(job["worker"], job["kind"], "busy", job["job"], at)
        self._write(self.root / "jobs" / f"{job['job']}.json", job)
        if not queued:
            self._file_queue_entry(job)
        return job

    def set_worker(self, name: str, kind: str, state: str, job: str | None, at: str | None = None) -> None:
        """Note what a worker does; `since` (when it began, `at`) stays while that does not change."""
        check_name(name, "worker name")
        current = self.worker(name) or {}
        if (current.get("kind"), current.get("state"), current.get("job")) == (kind, state, job):
            return
        record = {"name": name, "kind": kind, "state": state, "job": job, "since": at or eventlog.applied_at()}
        self._write(self.root / "workers" / f"{name}.json", record)

    def queue_entry(self, job: dict) -> Path:
        """The file of a job in the queue: queue/KIND/TIME.JOB.json, TIME the digits of when it was first queued."""
        queued_at = "".join(c for c in (job.get("queued") or "") if c.isdigit())
        return self.root / "queue" / job["kind"] / f"{queued_at}.{job['job']}.json"

    def _file_queue_entry(self, job: dict) -> None:
        entry = self.queue_entry(job)
        if job["status"] == JobStatus.QUEUED:
            self._write(entry, job)
        else:
            remove_if_present(entry)

    def _file_branch_entry(self, job: dict) -> None:
        path = self.root / "branches" / f"{_branch_key(job['repo'], job['branch'])}.json"
        record = _read_json(path) or {"repo": job["repo"], "branch": job["branch"], "jobs": []}
        active = [j for j in record["jobs"] if j != job["job"]]
        if JobStatus(job["status"]) not in FINAL:
            active.append(job["job"])
        if active != record["jobs"]:
            self._write(path, {**record, "jobs": active})

    # --- rebuilding -------------------------------------------------------

    def rebuild(self) -> int:
        """The checkpoint, then the hub's handled events after it, into fresh state files; how many events."""
        for part in checkpoint.PARTS:
            shutil.rmtree(self.root / part, ignore_errors=True)
        remove_if_present(self.root / pause.RECORD)
        held = pause.is_switched(self)  # a person's PAUSE not yet recorded stays, and the tick records it
        self.root.mkdir(parents=True, exist_ok=True)
        through = checkpoint.restore(self)
        pause.restored(self)
        applied = self.replay(after=through, in_flight=True)
        if held:
            pause.hold(self)
        self._write(self.root / ".built", {"rebuilt": iso_now(), "events": applied})
        return applied

    def replay(self, after: str = "", through: str = "9999-12-31", in_flight: bool = False) -> int:
        """Apply the handled events of the days of done/ after `after`, up to `through` (and `in_flight`, the
        recorded changes not yet handled); how many were applied."""
        applied = 0
        events = eventlog.handled(self.node_dir.done, after, through, REPLAYED)
        if in_flight:
            events = sorted(events + eventlog.in_flight(self.node_dir, REPLAYED))
        for handled in events:
            try:
                self.apply(handled.event_type, handled.payload, handled.at)
            except (BadInput, KeyError, ValueError, TypeError):
                continue  # an event the hub refused when it came; it changed nothing then either
            applied += 1
        return applied

    def _handled_events(self, after: str = "", through: str = "9999-12-31"):
        """(type, payload) of the replayed events in done/, in the order a rebuild applies them."""
        for handled in eventlog.handled(self.node_dir.done, after, through, REPLAYED):
            yield handled.event_type, handled.payload

    def _write(self, path: Path, record: dict) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        data = (json.dumps(record, indent=2, sort_keys=True) + "\n").encode()
        write_atomically(path, data, self.staging, sync_dir=False)


def check_name(value, what: str) -> str:
    """A job id, kind or worker name from an event, checked before it names a file under state/."""
    if not isinstance(value, str) or not SAFE_NAME.match(value):
        raise BadInput(f"bad {what} {value!r}: 1-63 letters, digits, '_' or '-', starting with a letter or digit")
    return value


def _is_news(current: dict, update: dict) -> bool:
    """Whether an update changes what is known: a later attempt, or a later step of this one."""
    if not current:
        return True
    attempt, known_attempt = update.get("attempt", current.get("attempt", 1)), current.get("attempt", 1)
    if attempt != known_attempt:
        return attempt > known_attempt
    status, known = JobStatus(update["status"]), JobStatus(current["status"])
    if known in FINAL or known is JobStatus.LOST:
        return False
    return RANK.get(status, 3) >= RANK.get(known, 3)


def _merged(current: dict, update: dict) -> dict:
    job = {**current, **update}  # a None in an update clears (a requeue clears worker and times)
    job.setdefault("attempt", 1)
    job["queue_wait"] = seconds_between(job.get("queued"), job.get("started"))
    job["run_time"] = seconds_between(job.get("started"), job.get("ended"))
    return job


def _branch_key(repo: str, branch: str) -> str:
    return hashlib.sha1(f"{repo}\0{branch}".encode()).hexdigest()[:16]


def _read_json(path: Path):
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


def _list(directory: Path) -> list[str]:
    try:
        return [name for name in os.listdir(directory) if not name.startswith(".")]
    except (FileNotFoundError, NotADirectoryError):
        return []



def heartbeat_age(spool, worker: str) -> float | None:
    """Seconds since a worker's heartbeat, or None when it has none (stopped or never started)."""
    try:
        return time.time() - os.stat(Path(spool) / "workers" / worker / "worker.json").st_mtime
    except OSError:
        return None
