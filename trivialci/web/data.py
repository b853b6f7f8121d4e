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
from ..hub.scheduling import BOOT_PATIENCE, LOST_AFTER
from ..hub.state import HubState
from ..spool.files import MAX_STATE_BYTES, lstat_under, open_directory_under, open_regular, read_json
from ..spool.layout import worker_names
from ..errors import BadInput
from ..store import ArtifactStore, StoredValue, StoreMissing, StoreUnavailable, is_key
from . import pushes
from .serving import OpenFile

PAGE_SIZE = 50
BRANCH_PUSHES = 20
CHART_JOBS = 30
RACY_SECONDS = 2.0
BRANCH_WINDOW = 500  # the newest jobs whose branches the branches view lists even without a state/branches record
RECENT_EVENTS = 100
BADGE_SCAN = 5000  # job records read at most to find a branch's newest job in state/
LOG_NAME = re.compile(r"\d{6}\.\d{6}-[A-Za-z0-9_+=:,@.-]+\.log\Z")
WHERES = ("done", "failed")
HOUSEKEEPING = {"tick", "prune", "work_required", "worker_status", "commit_status"}


class WebData:
    """The spool (and, if given, the artifact store) as the pages see them."""

    def __init__(self, spool, store: ArtifactStore | None):
        self.spool = Path(os.path.realpath(spool))  # the operator's path may pass through a link; nothing inside
        self.store = store
        self.state = HubState(spool)  # the constructor only names paths; open() would rebuild
        self.index = pushes.JobIndex(self._job)
        self.listed = (None, [])  # ((inode, mtime) of state/jobs/, its job ids newest first)

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
        """One page of jobs as pushes, newest first: from state/jobs/, or the store when state/ has none."""
        ids = self._ids()
        if ids:
            chosen, more = pushes.page_ids(ids, page)
            found = pushes.whole_pushes(self.index, ids, chosen, page)
            return {"source": "state", "page": page, "more": more, "pushes": found,
                    "jobs": [job for push in found for job in push["jobs"]]}
        jobs = self._store_jobs((page + 1) * PAGE_SIZE + 1)
        shown = [pushes.summary(j) for j in jobs[page * PAGE_SIZE:(page + 1) * PAGE_SIZE]]
        return {"source": "store", "page": page, "more": len(jobs) > (page + 1) * PAGE_SIZE,
                "pushes": pushes.group(shown), "jobs": shown}

    def _ids(self) -> list[str]:
        """The job ids in state/jobs/, newest first: names only, no record read. The listing is kept while the
        directory's mtime holds; one that changed within RACY_SECONDS is listed again each time (a change in the
        same clock tick as the listing leaves the mtime as it was)."""
        try:
            info = lstat_under("jobs", self.spool / "state")
        except OSError:
            return []
        stamp = (info.st_ino, info.st_mtime_ns)
        if self.listed[0] == stamp and time.time() - info.st_mtime > RACY_SECONDS:
            return self.listed[1]
        ids = sorted((n[:-5] for n in self._list("state", "jobs") if n.endswith(".json")), reverse=True)
        self.listed = (stamp, ids)
        return ids

    def branch_page(self, branch: str, repo: str | None = None) -> dict:
        """A branch's newest pushes, and the run times of each of its kinds (for the charts)."""
        ids = self._ids()
        found = pushes.branch_pushes(self.index, ids, (repo, branch), BRANCH_PUSHES) if ids else \
            pushes.group([pushes.summary(j) for j in self._store_jobs(PAGE_SIZE, branch)])
        kinds = sorted({j.get("kind") for p in found for j in p["jobs"] if isinstance(j.get("kind"), str)})
        charts = {kind: pushes.run_times(self.index, ids, branch, kind, CHART_JOBS) for kind in kinds}
        return {"branch": branch, "pushes": found, "charts": charts, "notes": self.push_notes(branch)}

    def branches(self) -> dict:
        """Every branch the hub queued jobs for, with its newest push; and the newest note of pushes that built
        nothing (skipped, nothing to build), today's and yesterday's."""
        records = [self._read("state", "branches", n) for n in self._list("state", "branches") if n.endswith(".json")]
        ids = self._ids()
        wanted = {(r.get("repo"), r.get("branch")) for r in records if r and isinstance(r.get("branch"), str)}
        wanted |= {(j.get("repo"), j.get("branch")) for j in self.index.walk(ids[:BRANCH_WINDOW])
                   if isinstance(j.get("branch"), str)}  # a state/ rebuilt lately may have fewer branch records
        newest = pushes.newest_per_branch(self.index, ids, wanted) if wanted else {}
        notes = self.push_notes()
        rows = [{"branch": branch, "repo": repo, "push": newest.get((repo, branch)), "note": notes.get(branch)}
                for repo, branch in wanted]
        rows += [{"branch": b, "repo": n.get("repo"), "push": None, "note": n} for b, n in notes.items()
                 if not any(r["branch"] == b for r in rows)]
        return {"branches": sorted(rows, key=_branch_order, reverse=True)}

    def push_notes(self, branch: str | None = None) -> dict:
        """{branch: the newest note of a push of it that queued nothing}, from today's and yesterday's events."""
        found = []
        for day in recent_days():
            for where in WHERES:
                found += [(day, name, where) for name in self._list(where, day) if pushes.is_push_event(name)]
        notes = {}
        for day, name, where in sorted(found, reverse=True)[:pushes.RECENT_PUSH_EVENTS]:
            note = self._push_note(where, day, name)
            if note and (branch is None or note["branch"] == branch) and note["branch"] not in notes:
                notes[note["branch"]] = note
        return {b: n for b, n in notes.items() if n["kind"] not in ("queued", "already queued")}

    def names(self, *parts: str) -> list[str]:
        """The names in SPOOL/PARTS, listed without following a link (for `up`'s console)."""
        return self._list(*parts)

    def state_is_built(self) -> bool:
        """Whether state/ is complete (its .built is written): a job missing from it then is gone, not rebuilt yet."""
        return self.state.is_built()

    def job_record(self, job_id: str) -> dict | None:
        """state/jobs/JOB.json, read as the pages read it."""
        return self._job(job_id)

    def push_note(self, where: str, day: str, name: str) -> dict | None:
        """What became of the push of one branch_update event (WHERE/DAY/NAME.json): its note and a hint."""
        return self._push_note(where, day, name)

    def _push_note(self, where: str, day: str, name: str) -> dict | None:
        event = self._read(where, day, name)
        if not event or not isinstance(event.get("branch"), str):
            return None
        log = self._open(where, day, name[:-5] + ".log")
        text = ""
        if log is not None:
            with log:
                text = b"".join(log.chunks(0, pushes.NOTE_BYTES - 1)).decode("utf-8", "replace").strip()
        text = text.splitlines()[-1] if text else ""
        kind = pushes.note_kind(text)
        return {"branch": event["branch"], "repo": event.get("repo"), "sha": event.get("new"), "text": text,
                "kind": kind, "hint": pushes.hint_for(kind), "at": f"{day}T{name[:2]}:{name[2:4]}:{name[4:6]}Z"}

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
        files = self._stored_sizes(f"jobs/{job_id}/files/")
        return {"job": record, "log_url": _web_url(record.get("log_url")),
                "stored_log": bool(self._stored_keys(f"jobs/{job_id}/log.txt")),
                "files": [{"name": key[len(f"jobs/{job_id}/files/"):], "size": size} for key, size in files]}

    def run_times(self, branch, kind) -> list[dict]:
        """The newest CHART_JOBS run times of `branch` and `kind`, oldest first."""
        if not isinstance(branch, str) or not isinstance(kind, str):
            return []
        return pushes.run_times(self.index, self._ids(), branch, kind, CHART_JOBS)

    def _stored_sizes(self, prefix: str) -> list[tuple[str, int]]:
        if self.store is None:
            return []
        try:
            return sorted(self.store.key_sizes(prefix).items())
        except (StoreMissing, StoreUnavailable, BadInput):
            return []

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
        """Queued jobs per kind, in the order they will be dispatched, each with its position and why it waits;
        and the jobs held for an approval."""
        paused, workers = self.state.paused(), self.workers()
        queue = {}
        for kind in self._list("state", "queue"):
            jobs = [j for j in (self._job(job_id) for job_id in self.state.queued(kind)) if j]
            if not jobs:
                continue
            why = waiting_reason(kind, paused, workers, self.state.boot_asked(kind))
            queue[kind] = [{**job, "position": n + 1, "why": why if n == 0 else f"{n} ahead of it; {why}"}
                           for n, job in enumerate(jobs)]
        held = [{**j, "why": f"waiting for approval: trivialci approve {j.get('job')}"}
                for j in (self._job(job_id) for job_id in self.state.held()) if j]
        return {"paused": paused, "queue": queue, "held": held}

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

    def events(self, now: float | None = None, housekeeping: bool = True) -> list[dict]:
        """The hub's newest handled events of today and yesterday (UTC), newest first; without `housekeeping`,
        none of the HOUSEKEEPING types (told from the file's name, so a hidden event is not even read)."""
        found = []
        for day in recent_days(now):
            for where in WHERES:
                found += [(name[:13], where, day, name) for name in self._list(where, day)
                          if name.endswith(".result.json") and (housekeeping or not is_housekeeping(name))]
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


def is_housekeeping(name: str) -> bool:
    """Whether a done/ or failed/ name (HHMMSS.ffffff-TYPE....) is of an event that only keeps the hub going."""
    return name[14:].split(".", 1)[0] in HOUSEKEEPING


def waiting_reason(kind: str, paused: bool, workers: list[dict], boot_asked: float | None) -> str:
    """Why the first queued job of `kind` is not running yet, in words."""
    if paused:
        return "dispatch is paused: state/PAUSE exists (trivialci resume)"
    alive = [w for w in workers if w["kind"] == kind and w["state"] != "lost" and w["heartbeat_age"] is not None
             and w["heartbeat_age"] < LOST_AFTER]
    if not alive:
        booting = f"; one was asked for {boot_asked:.0f}s ago and is booting" if boot_asked is not None and \
            boot_asked < BOOT_PATIENCE else ""
        return f"no {kind} worker is alive{booting}"
    busy = [w["name"] for w in alive if w["state"] == "busy"]
    if len(busy) == len(alive):
        return f"every {kind} worker is busy ({', '.join(busy)})"
    return f"about to be handed to an idle {kind} worker"


def _branch_order(row: dict) -> str:
    """Branches by their newest activity: a push's queue time, or a note's time."""
    push, note = row["push"] or {}, row["note"] or {}
    return max(str(push.get("queued") or ""), str(note.get("at") or ""))


def recent_days(now: float | None = None) -> list[str]:
    """Today's and yesterday's day folder names (UTC): the only ones the events page reads."""
    now = time.time() if now is None else now
    return [time.strftime("%Y-%m-%d", time.gmtime(now - back)) for back in (0, 86400)]


def _web_url(value) -> str | None:
    """A link to follow only when it is http(s): a javascript: URL in a record must not become a link."""
    return value if isinstance(value, str) and re.match(r"https?://[^\s\"'<>]+\Z", value) else None
