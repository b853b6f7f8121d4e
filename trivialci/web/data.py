"""What the hub's web UI shows, read from files only: state/, done/, failed/, workers/ and the store.

Every function here only reads, so the web UI can run beside the hub's loop
without a lock. Pages are bounded: the jobs page lists state/jobs/ (the names
sort by queue time) and reads only the 50 records it shows; the events page
looks at today's and yesterday's day folders only. When state/ is missing or
empty (it is disposable) the jobs come from the artifact store instead.

Anyone who can write the spool may put a link to a secret, or a FIFO, where a
record was. So every file is read through spool/files.py, walked from the
spool's directory without following a link on the way (state/jobs made a link
to /etc shows nothing), opened with O_NOFOLLOW|O_NONBLOCK and read only if it
is a regular file of bounded size; directories are listed the same way. Logs
and artifacts are handed to the server open, to be streamed, never read whole.
"""

import json
import os
import re
import time
from pathlib import Path

from ..store.history import list_jobs, parse_record
from ..hub.state import HubState
from ..spool.files import MAX_STATE_BYTES, open_directory_under, open_regular, read_json
from ..spool.layout import worker_names
from ..errors import BadInput
from ..store import ArtifactStore, StoredValue, StoreMissing, StoreUnavailable, is_key
from .serving import OpenFile

PAGE_SIZE = 50
RECENT_EVENTS = 100
BADGE_SCAN = 5000  # job records read at most to find a branch's newest job in state/
LOG_NAME = re.compile(r"\d{6}\.\d{6}-[A-Za-z0-9_+=:,@.-]+\.log\Z")
WHERES = ("done", "failed")


class WebData:
    """The spool (and, if given, the artifact store) as the pages see them."""

    def __init__(self, spool, store: ArtifactStore | None):
        self.spool = Path(os.path.realpath(spool))  # the operator's path may pass through a link; nothing inside
        self.store = store
        self.state = HubState(spool)  # the constructor only names paths; open() would rebuild

    def _read(self, *parts: str) -> dict | None:
        """The JSON object in SPOOL/PARTS; None if missing, behind a link, not a regular file, too big, not JSON."""
        value = read_json(Path(*parts), root=self.spool)
        return value if isinstance(value, dict) else None

    def _list(self, *parts: str) -> list[str]:
        """The names in SPOOL/PARTS (no dot-files), walked without following a link; [] when it cannot be."""
        try:
            fd = open_directory_under(self.spool, Path(*parts))
        except OSError:
            return []
        try:
            return [name for name in os.listdir(fd) if not name.startswith(".")]
        except OSError:
            return []
        finally:
            os.close(fd)

    def _open(self, *parts: str) -> OpenFile | None:
        try:
            return OpenFile(open_regular(Path(*parts), root=self.spool))
        except OSError:
            return None

    def _job(self, job_id: str) -> dict | None:
        return self._read("state", "jobs", f"{job_id}.json")

    # --- jobs ---------------------------------------------------------------

    def jobs_page(self, page: int) -> dict:
        """One page of jobs, newest first: from state/jobs/, or the store when state/ has none."""
        names = sorted(self._list("state", "jobs"), reverse=True)
        if names:
            chosen = names[page * PAGE_SIZE:(page + 1) * PAGE_SIZE]
            jobs = [j for j in (self._job(n[:-5]) for n in chosen if n.endswith(".json")) if j]
            return {"source": "state", "page": page, "more": len(names) > (page + 1) * PAGE_SIZE, "jobs": jobs}
        jobs = self._store_jobs((page + 1) * PAGE_SIZE + 1)
        return {"source": "store", "page": page, "more": len(jobs) > (page + 1) * PAGE_SIZE,
                "jobs": jobs[page * PAGE_SIZE:(page + 1) * PAGE_SIZE]}

    def _store_jobs(self, limit: int, branch: str | None = None) -> list[dict]:
        if self.store is None:
            return []
        try:
            return list_jobs(self.store, limit, branch)
        except (StoreMissing, StoreUnavailable):
            return []

    def job(self, job_id: str) -> dict | None:
        """The job's record (state/ first, then the store), its log's and files' presence; None if unknown."""
        record = self._job(job_id) or self._stored_record(job_id)
        if record is None:
            return None
        files = self._stored_keys(f"jobs/{job_id}/files/")
        return {"job": record, "log_url": _web_url(record.get("log_url")),
                "stored_log": bool(self._stored_keys(f"jobs/{job_id}/log.txt")),
                "files": [key[len(f"jobs/{job_id}/files/"):] for key in files]}

    def _stored_record(self, job_id: str) -> dict | None:
        try:
            return parse_record(self.store.get_bytes(f"jobs/{job_id}/job.json"), job_id) if self.store else None
        except (StoreMissing, StoreUnavailable, BadInput):
            return None

    def _stored_keys(self, prefix: str) -> list[str]:
        if self.store is None:
            return []
        try:
            if not prefix.endswith("/"):
                return [prefix] if self.store.exists(prefix) else []
            return self.store.list_keys(prefix)
        except (StoreMissing, StoreUnavailable, BadInput):
            return []

    def stored_value(self, key: str) -> StoredValue | None:
        """A store value, open to be streamed, for a key already checked by the caller; None when it is not there."""
        if self.store is None or not is_key(key):
            return None
        try:
            return self.store.open_value(key)
        except (StoreMissing, StoreUnavailable):
            return None

    def branch_status(self, branch: str) -> str | None:
        """The status of the newest job of `branch`, from state/ (bounded scan) or the store."""
        names = sorted(self._list("state", "jobs"), reverse=True)[:BADGE_SCAN]
        for name in names:
            job = self._job(name[:-5]) or {}
            if job.get("branch") == branch:
                return job.get("status")
        found = [] if names else self._store_jobs(1, branch)
        return found[0].get("status") if found else None

    # --- queue, workers, events -------------------------------------------

    def queue(self) -> dict:
        """Queued jobs per kind, in the order they will be dispatched, and the jobs held for an approval."""
        queued = {kind: [self._job(j) for j in self.state.queued(kind)] for kind in self._list("state", "queue")}
        held = [j for j in (self._job(job_id) for job_id in self.state.held()) if j]
        return {"paused": self.state.paused(), "queue": {k: [j for j in js if j] for k, js in queued.items()},
                "held": held}

    def workers(self) -> list[dict]:
        """Workers seen by the hub or present in the spool, with the age of their heartbeat."""
        seen = [self._read("state", "workers", name) for name in sorted(self._list("state", "workers"))]
        seen = {w["name"]: w for w in seen if w and isinstance(w.get("name"), str)}
        names = sorted(set(seen) | set(worker_names(self.spool)))
        return [self._worker(name, seen.get(name, {})) for name in names]

    def _worker(self, name: str, seen: dict) -> dict:
        beat, age = self._heartbeat(name)
        return {"name": name, "kind": seen.get("kind") or beat.get("kind"), "state": seen.get("state"),
                "job": seen.get("job"), "heartbeat_age": None if age is None else round(age, 1)}

    def _heartbeat(self, name: str) -> tuple[dict, float | None]:
        """worker.json and its age, both from the one descriptor read (a link or FIFO gives neither)."""
        try:
            with os.fdopen(open_regular(Path("workers", name, "worker.json"), root=self.spool), "rb") as handle:
                age = time.time() - os.fstat(handle.fileno()).st_mtime
                beat = json.loads(handle.read(MAX_STATE_BYTES))
        except (OSError, ValueError, RecursionError):
            return {}, None
        return beat if isinstance(beat, dict) else {}, age

    def events(self, now: float | None = None) -> list[dict]:
        """The hub's newest handled events of today and yesterday (UTC), newest first."""
        found = []
        for day in recent_days(now):
            for where in WHERES:
                found += [(name[:13], where, day, name) for name in self._list(where, day)
                          if name.endswith(".result.json")]
        found.sort(key=lambda entry: (entry[2], entry[0]), reverse=True)
        return [self._event(where, day, name) for _, where, day, name in found[:RECENT_EVENTS]]

    def _event(self, where: str, day: str, name: str) -> dict:
        result = self._read(where, day, name) or {}
        log = result.get("log")
        has_log = isinstance(log, str) and LOG_NAME.match(log) and self._is_regular(where, day, log)
        return {"where": where, "day": day, "event": result.get("event"), "type": result.get("type"),
                "reason": result.get("reason"), "started": result.get("started"),
                "duration": result.get("duration"), "log": f"{where}/{day}/{log}" if has_log else None}

    def _is_regular(self, *parts: str) -> bool:
        found = self._open(*parts)
        if found:
            found.close()
        return found is not None

    def event_log(self, where: str, day: str, name: str) -> OpenFile | None:
        """A .log of done/ or failed/ of today or yesterday, open to be streamed; None for anything else."""
        if where not in WHERES or day not in recent_days() or not LOG_NAME.match(name):
            return None
        return self._open(where, day, name)


def recent_days(now: float | None = None) -> list[str]:
    """Today's and yesterday's day folder names (UTC): the only ones the events page reads."""
    now = time.time() if now is None else now
    return [time.strftime("%Y-%m-%d", time.gmtime(now - back)) for back in (0, 86400)]


def _web_url(value) -> str | None:
    """A link to follow only when it is http(s): a javascript: URL in a record must not become a link."""
    return value if isinstance(value, str) and re.match(r"https?://[^\s\"'<>]+\Z", value) else None
