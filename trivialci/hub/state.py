"""The hub's state: plain files under SPOOL/state/, derived from the event log.

    state/queue/KIND/TIME.JOB.json a work package waiting (TIME: when it was queued, to the
                                   millisecond); `ls` shows the order, `rm` dequeues
    state/held/JOB.json            a job HELD until `trivialci approve JOB` (a fork's pull request)
    state/jobs/JOB.json            the job view: the last known status of every job
    state/workers/NAME.json        workers seen: {name, kind, state: idle|busy|lost, job, since}
    state/idle/NAME                an empty file for each idle worker: an index of workers/, so that a
                                   dispatch reads the idle workers' files, not every worker's
    state/branches/KEY.json        {repo, branch, jobs, sha}: the jobs of a branch not yet final, and the
                                   sha its newest job was queued for
    state/requests/REQ.json        the jobs queued for one `trivialci build` request
    state/boots/KIND.json          {kind, asked}: when a worker of KIND was last asked for
    state/PAUSE                    while it exists (a regular file), nothing is dispatched
    state/paused.json              {reason, since}: dispatch is paused as far as the event log goes (pause.py)
    state/.built                   written once the files above are complete
    state/.boot                    the boot of the machine whose writes of state/ were not synced (unsynced.py)

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

Anyone who can write the spool can put a symlink or a FIFO into state/. Every
read and write here walks from state/ one directory at a time without following
a link (spool/files.py): a link or special file where a record should be reads
as no record, a write replaces a link at a file's name (never writes through it)
and is refused (StateUnusable) when a directory on the way is a link. A rebuild
replaces such links with fresh directories.
"""

import errno
import hashlib
import json
import re
import shutil
import stat
import time
from contextlib import contextmanager
from pathlib import Path

from . import checkpoint, eventlog, pause, unsynced
from .role import check_on_hub
from ..spool.atomic import remove_if_present, write_atomically
from ..errors import BadInput, SpoolUnavailable
from ..jobs import FINAL, RUNNING, JobStatus, check_request_id, is_job_id, iso_now, seconds_between
from ..spool.files import list_names, lstat_under, read_json
from ..spool.layout import NODE_NAME, check_node_name, hub_dir
from .fields import check_new_job, check_work_status, check_work_required

REPLAYED = ("work_status", "work_required", "worker_status", "pause", "resume")
WORKER_STATES = ("idle", "lost")  # what a worker_status event may say; `busy` follows from the job handed over
SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,62}\Z")  # event values that become file names
IDLE = "idle"  # state/idle/NAME: the index of idle workers
RANK = {JobStatus.HELD: 0, JobStatus.WAITING: 0, JobStatus.QUEUED: 0, JobStatus.STARTING: 1, JobStatus.BUILDING: 2}


class StateUnusable(SpoolUnavailable):
    """A directory of state/ is a link or not a directory: the hub writes nothing through it."""


class HubState:
    def __init__(self, spool, root=None, staging=None):
        """The state of the hub of `spool`, in state/ (or in `root`, staging its writes in `staging`)."""
        self.node_dir = hub_dir(spool)
        self.root = Path(root) if root is not None else self.node_dir.state
        self.staging = Path(staging) if staging is not None else self.node_dir.tmp

    @classmethod
    def open(cls, spool) -> "HubState":
        """The state of the hub of `spool`, rebuilt from done/ first if it is missing."""
        check_on_hub("changing the hub's state")
        state = cls(spool)
        unsynced.prepare(state.root, state.staging)  # after a crash of the machine, .built is gone
        if not state.is_built():
            state.rebuild()
        elif not state._is_directory(IDLE):  # a state/ from before the index: made once
            state._index_idle_workers()
        return state

    # --- reading ----------------------------------------------------------

    def is_built(self) -> bool:
        """Whether state/ is complete (.built written): if not, the next open() rebuilds it."""
        return self._is_file(".built")

    def job(self, job_id: str) -> dict | None:
        """The job's view, or None (also for anything that is not a job id: it names no file here)."""
        if not (isinstance(job_id, str) and is_job_id(job_id)):
            return None
        return self._read(f"jobs/{job_id}.json")

    def queued(self, kind: str) -> list[str]:
        """Job ids waiting for a worker of `kind`, oldest first."""
        names = sorted(name for name in _list(self.root, f"queue/{kind}") if name.endswith(".json"))
        return [name.split(".")[1] for name in names if name.count(".") == 2]

    def queued_kinds(self) -> list[str]:
        return sorted(_list(self.root, "queue"))

    def worker(self, name: str) -> dict | None:
        if not (isinstance(name, str) and NODE_NAME.match(name)):
            return None
        return self._read(f"workers/{name}.json")

    def workers(self) -> list[dict]:
        return [w for w in map(self.worker, self.worker_names()) if w]

    def idle_workers(self) -> list[dict]:
        """The workers waiting for work, found through state/idle/ (a push to a hub of a thousand busy
        workers reads no worker's file); each checked against its own record."""
        found = map(self.worker, sorted(_list(self.root, IDLE)))
        return [worker for worker in found if worker and worker.get("state") == "idle"]

    def worker_names(self) -> list[str]:
        """The names of the workers state/ knows, sorted (their files are read one by one, when needed)."""
        return [name[:-5] for name in sorted(_list(self.root, "workers")) if name.endswith(".json")]

    def branch_jobs(self, repo: str, branch: str) -> list[str]:
        record = self._read(f"branches/{_branch_key(repo, branch)}.json") or {}
        return record.get("jobs", [])

    def branch_sha(self, repo: str, branch: str) -> str | None:
        """The sha the newest job of the branch was queued (or held) for: a push seen twice is built once."""
        record = self._read(f"branches/{_branch_key(repo, branch)}.json") or {}
        return record.get("sha")

    def forget_branch_sha(self, repo: str, branch: str) -> None:
        """A deleted branch: a push that brings it back, even at the same sha, is built."""
        path = f"branches/{_branch_key(repo, branch)}.json"
        record = self._read(path)
        if record and record.get("sha"):
            self._write(path, {**record, "sha": None})

    def held(self) -> list[str]:
        """Ids of the jobs HELD until someone approves them, oldest first."""
        return sorted(name[:-5] for name in _list(self.root, "held") if name.endswith(".json"))

    def recent_jobs(self, limit: int) -> list[dict]:
        """The newest `limit` jobs; reads only their files."""
        names = sorted(_list(self.root, "jobs"))[-limit:]
        return [j for j in (self.job(n[:-5]) for n in reversed(names)) if j]

    def request(self, request_id: str) -> dict | None:
        """What `trivialci build` asked for: {request, jobs, note}, written by branch_update."""
        return self._read(f"requests/{request_id}.json")

    def write_request(self, request_id: str, job_ids: list[str], note: str) -> None:
        """BadInput for what is not a request id (it names the file)."""
        check_request_id(request_id)
        self._write(f"requests/{request_id}.json", {"request": request_id, "jobs": job_ids, "note": note})

    def paused(self) -> bool:
        return self._is_file("PAUSE")

    def boot_asked(self, kind: str) -> float | None:
        """Seconds since a worker of `kind` was last asked for (state/boots/KIND.json); None if never."""
        try:
            info = lstat_under(f"boots/{kind}.json", self.root)
        except OSError:
            return None
        return time.time() - info.st_mtime if stat.S_ISREG(info.st_mode) else None

    def note_boot_asked(self, kind: str) -> None:
        self._write(f"boots/{kind}.json", {"kind": kind, "asked": iso_now()})

    # --- the fold ---------------------------------------------------------

    def apply(self, event_type: str, payload: dict, at: str | None = None):
        """Fold one event of REPLAYED into the files (idempotent); `at`: when the hub handled it [now].
        BadInput refuses it whole."""
        if at is None and self._applied_already(payload):
            return self.job(payload.get("job")) if event_type == "work_status" else None
        at, payload = at or eventlog.applied_at(), eventlog.without_cause(payload)
        if event_type == "work_status":
            return self.apply_status(payload, at)
        if event_type == "work_required":
            payload = check_work_required(payload)
            if self.unfinished_job(payload["worker"], payload) is None:
                self.set_worker(payload["worker"], payload["kind"], "idle", None, at)
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
        """Merge a status change into its job, unless it is older than what is known.

        Every field is checked first (fields.py); nothing is written for an update that fails.
        """
        update = check_work_status(eventlog.without_cause(update))
        current = self.job(update["job"]) or {}
        if not _is_news(current, update):
            return current
        job = check_new_job(_merged(current, update))
        if job == current:
            return current  # applied already (live, then when handled): a person's rm of its entry stands
        queued = job["status"] == JobStatus.QUEUED
        if queued:  # the entry before the job: jobs/ says QUEUED only while its entry exists (handedits.py)
            self._file_queue_entry(job)
        self._file_held_entry(job)
        self._file_branch_entry(job)
        if JobStatus(job["status"]) in RUNNING and job.get("worker"):
            self.set_worker(job["worker"], job["kind"], "busy", job["job"], at)
        self._write(f"jobs/{job['job']}.json", job)
        if not queued:
            self._file_queue_entry(job)
        return job

    def set_worker(self, name: str, kind: str, state: str, job: str | None, at: str | None = None) -> None:
        """Note what a worker does; `since` (when it began, `at`) stays while that does not change."""
        check_node_name(name)
        current = self.worker(name) or {}
        if (current.get("kind"), current.get("state"), current.get("job")) != (kind, state, job):
            if state != "idle":  # out of the index first: an entry without an idle record is passed over
                remove_if_present(f"{IDLE}/{name}", root=self.root)
            record = {"name": name, "kind": kind, "state": state, "job": job, "since": at or eventlog.applied_at()}
            self._write(f"workers/{name}.json", record)
        if state == "idle":
            self._mark_idle(name)

    def _mark_idle(self, name: str) -> None:
        if not self._is_file(f"{IDLE}/{name}"):
            with self._refusing_links(f"{IDLE}/{name}"):
                write_atomically(f"{IDLE}/{name}", b"", self.staging, sync_dir=False, root=self.root,
                                 sync=not unsynced.allowed(self.root))

    def _index_idle_workers(self) -> None:
        """state/idle/ made from workers/ (after a checkpoint is restored, or for a state/ older than the index)."""
        _remove(self.root / IDLE)  # a link put there is removed, never followed
        (self.root / IDLE).mkdir()
        for worker in self.workers():
            if worker.get("state") == "idle":
                self._mark_idle(worker["name"])

    def queue_entry(self, job: dict) -> str:
        """The file of a job in the queue, relative to state/: queue/KIND/TIME.JOB.json, TIME the digits of when
        it was first queued."""
        queued_at = "".join(c for c in (job.get("queued") or "") if c.isdigit())
        return f"queue/{job['kind']}/{queued_at}.{job['job']}.json"

    def _file_queue_entry(self, job: dict) -> None:
        self._file_entry(self.queue_entry(job), job, JobStatus.QUEUED)

    def _file_held_entry(self, job: dict) -> None:
        self._file_entry(f"held/{job['job']}.json", job, JobStatus.HELD)

    def _file_entry(self, entry: str, job: dict, status: JobStatus) -> None:
        """The job's file at `entry` while the job is in `status`; no file there otherwise."""
        if job["status"] == status:
            self._write(entry, job)
        else:
            with self._refusing_links(entry):
                remove_if_present(entry, root=self.root)

    def _file_branch_entry(self, job: dict) -> None:
        path = f"branches/{_branch_key(job['repo'], job['branch'])}.json"
        record = self._read(path) or {"repo": job["repo"], "branch": job["branch"], "jobs": []}
        active = [j for j in record["jobs"] if j != job["job"]]
        if JobStatus(job["status"]) not in FINAL:
            active.append(job["job"])
        pushed = job["status"] in (JobStatus.QUEUED, JobStatus.HELD) and job.get("attempt") == 1
        sha = job["sha"] if pushed and not job.get("rebuild_of") else record.get("sha")  # a rebuild is no push
        if active != record["jobs"] or sha != record.get("sha"):
            self._write(path, {**record, "jobs": active, "sha": sha})

    # --- rebuilding -------------------------------------------------------

    def rebuild(self) -> int:
        """The checkpoint, then the hub's handled events after it, into fresh state files; how many events."""
        _remove_unless_directory(self.root)
        self.root.mkdir(parents=True, exist_ok=True)
        for part in (*checkpoint.PARTS, "held", "boots", IDLE):
            _remove(self.root / part)
        remove_if_present(pause.RECORD, root=self.root)
        held = pause.is_switched(self)  # a person's PAUSE not yet recorded stays, and the tick records it
        through = checkpoint.restore(self)
        self._index_idle_workers()
        pause.restored(self)
        applied = self.replay(after=through, in_flight=True)
        if held:
            pause.hold(self)
        self._write(".built", {"rebuilt": iso_now(), "events": applied})
        return applied

    def replay(self, after: str = "", through: str = "9999-12-31", in_flight: bool = False) -> int:
        """Apply the handled events of the days of done/ after `after`, up to `through` (and `in_flight`, the
        recorded changes of those days not yet handled); how many were applied."""
        applied = 0
        events = eventlog.handled(self.node_dir.done, after, through, REPLAYED)
        if in_flight:
            events = sorted(events + eventlog.in_flight(self.node_dir, REPLAYED, after, through))
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

    # --- the files --------------------------------------------------------

    def _read(self, relative: str):
        """The JSON of state/RELATIVE; None unless it is a regular file reached without links."""
        return read_json(relative, root=self.root)

    def _is_file(self, relative: str) -> bool:
        try:
            return stat.S_ISREG(lstat_under(relative, self.root).st_mode)
        except OSError:
            return False

    def _is_directory(self, relative: str) -> bool:
        try:
            return stat.S_ISDIR(lstat_under(relative, self.root).st_mode)
        except OSError:
            return False

    def _write(self, relative: str, record: dict) -> None:
        data = (json.dumps(record, indent=2, sort_keys=True) + "\n").encode()
        with self._refusing_links(relative):
            write_atomically(relative, data, self.staging, sync_dir=False, root=self.root,
                             sync=not unsynced.allowed(self.root))  # derived: rebuilt after a crash

    @contextmanager
    def _refusing_links(self, relative: str):
        """A link or non-directory on the way to state/RELATIVE as StateUnusable, naming it."""
        try:
            yield
        except OSError as error:
            if error.errno not in (errno.ELOOP, errno.ENOTDIR):
                raise
            raise StateUnusable(f"{_blocking_part(self.root, relative)} in {self.node_dir.spool} is a symlink or "
                                "not a directory: the hub follows no links in state/; remove it, or remove "
                                "state/ (the hub rebuilds it from done/)") from None


def check_name(value, what: str) -> str:
    """A name from an event, checked before it names a file under state/.

    The hub's own fields have their own checks now (jobs.check_job_id, check_kind,
    spool.layout.check_node_name, through fields.py); this stays for scripts that call it.
    """
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


def _list(root: Path, relative: str = "") -> list[str]:
    return [name for name in list_names(relative, root) if not name.startswith(".")]


def _blocking_part(root: Path, relative: str) -> str:
    """state/PART: the first directory on the way to state/RELATIVE that is not one (a link, a file)."""
    parts = Path(relative).parts[:-1]
    for depth in range(len(parts) + 1):
        path = root.joinpath(*parts[:depth])
        if path.is_symlink() or (path.exists() and not path.is_dir()):
            return "/".join(("state", *parts[:depth]))
    return f"state/{relative}"


def _remove(path: Path) -> None:
    """Remove what is at `path`: a directory with what is in it, or a link or file (never what a link points to)."""
    if path.is_symlink() or (path.exists() and not path.is_dir()):
        path.unlink()
    else:
        shutil.rmtree(path, ignore_errors=True)


def _remove_unless_directory(path: Path) -> None:
    if path.is_symlink() or (path.exists() and not path.is_dir()):
        path.unlink()


def heartbeat_age(spool, worker: str) -> float | None:
    """Seconds since a worker's heartbeat, or None when it has none (stopped, never started, or a link or
    special file in its place)."""
    try:
        info = lstat_under(f"{worker}/worker.json", Path(spool) / "workers")
    except OSError:
        return None
    return time.time() - info.st_mtime if stat.S_ISREG(info.st_mode) else None
