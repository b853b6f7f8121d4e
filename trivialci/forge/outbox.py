"""The statuses waiting to be posted: plain files under SPOOL/state/statuses/, the newest report of each wins.

    state/statuses/KEY.json          the newest report for one (forge, repository, sha, context) not posted
                                     yet, with {attempts, next_try, last_error}; `ls` is the queue, `rm` drops one
    state/statuses/sent/KEY.json     the last report posted for that key (a report that changes nothing, or
                                     that is older, is dropped)
    state/statuses/failed/KEY.json   a report given up, with its "reason"
    state/statuses/.lock             flock(2) around every read-change-write of the files above

KEY is sha256(forge, repository, sha, context)[:32]. Writers are the hub's
commit_status script (queue) and the hub's sender thread (take, done, retry,
give up); they hold the lock only to read and replace a file, never while a
request is under way, so a forge that is down never holds up a hub script.
Files are written with spool.atomic (staged in SPOOL/tmp/, renamed into place).
Sent and failed records older than KEEP_DAYS are removed by the sender.
"""

import fcntl
import hashlib
import json
import os
import re
import time
from contextlib import contextmanager
from pathlib import Path

from ..errors import BadInput
from ..git.commands import check_sha
from ..jobs import is_job_id

from ..spool.atomic import remove_if_present, write_atomically
from ..spool.files import read_json
from ..spool.layout import hub_dir
from . import statuses
from .hooks import full_name
from .registry import forge_named

KEEP_DAYS = 7
REPORT_FIELDS = ("forge", "forge_repo", "sha", "context", "state", "description", "target_url", "order", "job")


class Outbox:
    def __init__(self, spool):
        node = hub_dir(spool)
        self.root, self.tmp = node.state / "statuses", node.tmp

    def queue(self, report: dict) -> str:
        """Keep `report` unless a newer one is queued or was sent, or it changes nothing; a line for the log.

        BadInput when a field breaks its grammar (check_report): nothing is written then."""
        report = check_report(report)
        key = key_of(report)
        with self.locked():
            sent, pending = self._read(self.root / "sent" / f"{key}.json"), self._read(self.root / f"{key}.json")
            if sent and sent["order"] > report["order"]:
                return f"dropped: a newer status was posted already ({sent['state']}: {sent['description']})"
            if pending and pending["order"] > report["order"]:
                return f"dropped: a newer status is waiting ({pending['state']}: {pending['description']})"
            if sent and _unchanged(sent, report) and not pending:
                return f"dropped: the forge shows {sent['state']} ({sent['description']}) already"
            self._write(self.root / f"{key}.json", {**report, "attempts": 0, "next_try": 0.0, "last_error": None,
                                                    "queued": time.time(), "entry": os.urandom(8).hex()})
        return f"queued {report['state']} ({report['description']}) for {report['forge_repo']}@{report['sha'][:12]} " \
               f"{report['context']}: state/statuses/{key}.json"

    def due(self, now: float) -> list[tuple[str, dict]]:
        """(key, entry) of the reports whose next try has come, the longest waiting first."""
        entries = [(name[:-5], self._read(self.root / name)) for name in _names(self.root)]
        return sorted(((key, entry) for key, entry in entries if entry and entry.get("next_try", 0) <= now),
                      key=lambda item: item[1].get("queued", 0))

    def sent(self, key: str, entry: dict) -> bool:
        """The report was posted: it becomes the last sent, unless a newer one replaced it meanwhile."""
        return self._settle(key, entry, lambda: self._write(self.root / "sent" / f"{key}.json",
                                                           {**_report(entry), "sent": time.time()}))

    def retry(self, key: str, entry: dict, error: str, delay: float) -> bool:
        changed = {**entry, "attempts": entry.get("attempts", 0) + 1, "next_try": time.time() + delay,
                   "last_error": error}
        return self._settle(key, entry, lambda: self._write(self.root / f"{key}.json", changed), remove=False)

    def give_up(self, key: str, entry: dict, reason: str) -> bool:
        record = {**_report(entry), "attempts": entry.get("attempts", 0) + 1, "reason": reason,
                  "failed": time.time()}
        return self._settle(key, entry, lambda: self._write(self.root / "failed" / f"{key}.json", record))

    def prune(self, now: float, keep_days: float = KEEP_DAYS) -> int:
        """Remove sent and failed records older than `keep_days`."""
        removed = 0
        for where in ("sent", "failed"):
            for name in _names(self.root / where):
                path = self.root / where / name
                try:
                    if now - path.stat().st_mtime > keep_days * 86400:
                        path.unlink()
                        removed += 1
                except OSError:
                    pass
        return removed

    def _settle(self, key: str, entry: dict, write, remove: bool = True) -> bool:
        """Apply an outcome only if the queued file is still `entry` (a newer report is left for the next round)."""
        path = self.root / f"{key}.json"
        with self.locked():
            current = self._read(path)
            if current is None or current.get("entry") != entry.get("entry"):
                return False
            write()
            if remove:
                remove_if_present(path)
        return True

    @contextmanager
    def locked(self):
        self.root.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.root / ".lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def _write(self, path: Path, record: dict) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.tmp.mkdir(parents=True, exist_ok=True)
        write_atomically(path, (json.dumps(record, indent=2, sort_keys=True) + "\n").encode(), self.tmp,
                         sync_dir=False)

    @staticmethod
    def _read(path: Path) -> dict | None:
        value = read_json(path)
        return value if isinstance(value, dict) and isinstance(value.get("order"), str) else None


def check_report(report: dict) -> dict:
    """The report's fields if each passes its grammar (statuses.py says what they mean); BadInput otherwise."""
    if not isinstance(report, dict):
        raise BadInput("a status report is a JSON object")
    forge_named(report.get("forge"))
    checked = {"forge": report["forge"], "forge_repo": full_name(report.get("forge_repo")),
               "sha": check_sha(report.get("sha")), "job": report.get("job")}
    for field, grammar, example in CHECKS:
        value = report.get(field)
        if not (value is None and field == "target_url") and not (isinstance(value, str) and grammar(value)):
            raise BadInput(f"bad {field} {str(value)[:80]!r} in a status report: expected {example}")
        checked[field] = value
    return checked


CHECKS = (("context", re.compile(r"[A-Za-z0-9][A-Za-z0-9_./-]{0,99}\Z").match, "e.g. trivialci/build"),
          ("state", lambda value: value in statuses.STATES, " or ".join(statuses.STATES)),
          ("description", lambda value: len(value) <= statuses.MAX_DESCRIPTION and value.isprintable(),
           f"printable text of at most {statuses.MAX_DESCRIPTION} characters"),
          ("target_url", re.compile(r"https?://[!-~]{1,2040}\Z").match, "an http(s) URL or null"),
          ("order", re.compile(r"\d{8}T\d{6}Z-[0-9a-f]{6}/\d{6}/\d\Z").match, "JOB/ATTEMPT/STEP"),
          ("job", is_job_id, "a job id"))


def key_of(report: dict) -> str:
    words = "\0".join(str(report.get(field)) for field in ("forge", "forge_repo", "sha", "context"))
    return hashlib.sha256(words.encode("utf-8", "surrogateescape")).hexdigest()[:32]


def _report(entry: dict) -> dict:
    return {field: entry.get(field) for field in REPORT_FIELDS}


def _unchanged(sent: dict, report: dict) -> bool:
    """Whether the forge would show nothing new; each forge module says what that means for it."""
    return forge_named(report["forge"]).unchanged(sent, report)


def _names(directory: Path) -> list[str]:
    try:
        return [n for n in os.listdir(directory) if n.endswith(".json") and not n.startswith(".")]
    except OSError:
        return []

