"""The hub's state: plain files under SPOOL/state/, derived from the event log.

    state/queue/KIND/TIME.JOB.json a work package waiting (TIME: when it was queued, to the
                                   millisecond); `ls` shows the order, `rm` dequeues
    state/held/JOB.json            a job HELD until `trivialci approve JOB` (a fork's pull request)
    state/jobs/JOB.json            the job view: the last known status of every job
    state/workers/NAME.json        workers seen: {name, kind, state: idle|busy|lost, job, since}
    state/branches/KEY.json        {repo, branch, jobs, sha}: the jobs of a branch not yet final, and the
                                   sha its newest job was queued for
    state/requests/REQ.json        the jobs queued for one `trivialci build` request
    state/PAUSE                    while it exists, nothing is dispatched
    state/.built                   written once the files above are complete

Every change of a job is a `work_status` event, and a worker asking for work is
a `work_required` event; `apply` folds one of them into these files. The hub
applies a change at once (so two scripts never hand out one package) and also
emits it, so that done/ holds every change. Deleting state/ loses nothing: the
next HubState.open() replays the hub's done/ through the same `apply`.
"""

import hashlib
import json
import os
import re
import shutil
import time
from pathlib import Path

from ..spool.atomic import remove_if_present, write_atomically
from ..errors import BadInput
from ..jobs import FINAL, RUNNING, JobStatus, iso_now, seconds_between
from ..spool.layout import hub_dir

REPLAYED = ("work_status", "work_required")
SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,62}\Z")  # event values that become file names
RANK = {JobStatus.HELD: 0, JobStatus.QUEUED: 0, JobStatus.STARTING: 1, JobStatus.BUILDING: 2}


class HubState:
    def __init__(self, spool):
        self.node_dir = hub_dir(spool)
        self.root = self.node_dir.state

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

    def branch_sha(self, repo: str, branch: str) -> str | None:
        """The sha the newest job of the branch was queued (or held) for: a push seen twice is built once."""
        record = _read_json(self.root / "branches" / f"{_branch_key(repo, branch)}.json") or {}
        return record.get("sha")

    def forget_branch_sha(self, repo: str, branch: str) -> None:
        """A deleted branch: a push that brings it back, even at the same sha, is built."""
        path = self.root / "branches" / f"{_branch_key(repo, branch)}.json"
        record = _read_json(path)
        if record and record.get("sha"):
            self._write(path, {**record, "sha": None})

    def held(self) -> list[str]:
        """Ids of the jobs HELD until someone approves them, oldest first."""
        return sorted(name[:-5] for name in _list(self.root / "held") if name.endswith(".json"))

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

    def apply(self, event_type: str, payload: dict) -> None:
        """Fold one work_status or work_required event into the files (idempotent)."""
        if event_type == "work_status":
            self.apply_status(payload)
        elif event_type == "work_required":
            self.set_worker(payload["worker"], payload.get("kind", ""), "idle", None)

    def apply_status(self, update: dict) -> dict:
        """Merge a status change into its job, unless it is older than what is known."""
        current = self.job(check_name(update.get("job"), "job id")) or {}
        if not _is_news(current, update):
            return current
        job = _merged(current, update)
        check_name(job.get("kind"), "kind")
        if job.get("worker") is not None:
            check_name(job["worker"], "worker name")
        self._file_queue_entry(job)
        self._file_held_entry(job)
        self._file_branch_entry(job)
        if JobStatus(job["status"]) in RUNNING and job.get("worker"):
            self.set_worker(job["worker"], job["kind"], "busy", job["job"])
        self._write(self.root / "jobs" / f"{job['job']}.json", job)
        return job

    def set_worker(self, name: str, kind: str, state: str, job: str | None) -> None:
        check_name(name, "worker name")
        record = {"name": name, "kind": kind, "state": state, "job": job, "since": iso_now()}
        self._write(self.root / "workers" / f"{name}.json", record)

    def _file_queue_entry(self, job: dict) -> None:
        queued_at = "".join(c for c in (job.get("queued") or "") if c.isdigit())
        entry = self.root / "queue" / job["kind"] / f"{queued_at}.{job['job']}.json"
        if job["status"] == JobStatus.QUEUED:
            self._write(entry, job)
        else:
            remove_if_present(entry)

    def _file_held_entry(self, job: dict) -> None:
        entry = self.root / "held" / f"{job['job']}.json"
        if job["status"] == JobStatus.HELD:
            self._write(entry, job)
        else:
            remove_if_present(entry)

    def _file_branch_entry(self, job: dict) -> None:
        path = self.root / "branches" / f"{_branch_key(job['repo'], job['branch'])}.json"
        record = _read_json(path) or {"repo": job["repo"], "branch": job["branch"], "jobs": []}
        active = [j for j in record["jobs"] if j != job["job"]]
        if JobStatus(job["status"]) not in FINAL:
            active.append(job["job"])
        sha = job["sha"] if job["status"] in (JobStatus.QUEUED, JobStatus.HELD) and job.get("attempt") == 1 \
            else record.get("sha")
        if active != record["jobs"] or sha != record.get("sha"):
            self._write(path, {**record, "jobs": active, "sha": sha})

    # --- rebuilding -------------------------------------------------------

    def rebuild(self) -> int:
        """Replay the hub's handled events into fresh state files; how many were applied."""
        for part in ("jobs", "queue", "held", "workers", "branches"):
            shutil.rmtree(self.root / part, ignore_errors=True)
        self.root.mkdir(parents=True, exist_ok=True)
        applied = 0
        for event_type, payload in self._handled_events():
            try:
                self.apply(event_type, payload)
            except (BadInput, KeyError, ValueError):
                continue  # an event the hub refused when it came; it changed nothing then either
            applied += 1
        self._write(self.root / ".built", {"rebuilt": iso_now(), "events": applied})
        return applied

    def _handled_events(self):
        """work_status and work_required events in done/, in the order the hub handled them."""
        done = self.node_dir.done
        for day in sorted(_list(done)):
            for name in sorted(_list(done / day)):
                if name.endswith(".json") and not name.endswith(".result.json"):
                    event_type = name.split("-", 1)[-1].split(".", 1)[0]
                    if event_type in REPLAYED:
                        payload = _read_json(done / day / name)
                        if isinstance(payload, dict) and ("job" in payload or "worker" in payload):
                            yield event_type, payload

    def _write(self, path: Path, record: dict) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        data = (json.dumps(record, indent=2, sort_keys=True) + "\n").encode()
        write_atomically(path, data, self.node_dir.tmp, sync_dir=False)


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
