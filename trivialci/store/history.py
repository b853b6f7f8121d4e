"""Job history, read from the artifact store alone: the hub may be gone.

    jobs/JOB/job.json     the job's record: job, repo, branch, sha, kind, status, worker, attempt,
                          queued, started, ended, queue_wait, run_time, exit_code, files, reason
    jobs/JOB/log.txt      its output
    jobs/JOB/files/...    its artifacts

JOB starts with the UTC time the job was queued (YYYYmmddTHHMMSSZ-xxxxxx), so
the names under jobs/ sort oldest first: the newest N jobs are the last N names,
and listing them reads N records however many jobs the store holds (with a
branch, as many as it takes to find N of that branch). A job whose job.json is
not there yet (its worker is still uploading) is not listed; one whose job.json
is damaged is listed as UNREADABLE. Records are input like any other: they are
shown with control characters escaped, so a record cannot drive the terminal.
"""

import json
import math
import re

from ..errors import BadInput
from . import ArtifactStore, StoreMissing, is_key
from ..spool.terminal import printable

JOBS = "jobs/"
JOB_FIELDS = ("job", "repo", "branch", "sha", "kind", "status", "worker", "attempt", "queued", "started", "ended",
              "queue_wait", "run_time", "exit_code", "files", "reason", "push", "stage", "rebuild_of", "upstream", "plan")
COLUMNS = ("JOB", "STATUS", "BRANCH", "SHA", "KIND", "WORKER", "QUEUED", "RUN TIME")
MAX_CELL = 40
UNREADABLE = "UNREADABLE"
_ISO_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d")


def list_jobs(store: ArtifactStore, limit: int | None, branch: str | None = None) -> list[dict]:
    """The newest `limit` job records (all with None; only `branch`'s, if given), newest first."""
    if limit is not None and limit < 1:
        return []
    found = []
    for job in reversed(store.list_children(JOBS)):
        record = _listed_record(store, job)
        if record is not None and (branch is None or record.get("branch") == branch):
            found.append(record)
            if len(found) == limit:
                break
    return found


def show_job(store: ArtifactStore, job: str) -> dict:
    """The record of `job` (its job.json), as stored."""
    key = job_key(job, "job.json")
    try:
        data = store.get_bytes(key)
    except StoreMissing as error:
        if error.key is None:
            raise
        raise StoreMissing(f"no job {job} in the artifact store {store.url}: "
                           f"`trivialci history list --store {store.url}` lists the jobs it holds", key) from None
    return parse_record(data, f"{key} in {store.url}")


def push_jobs(store: ArtifactStore, job: str) -> list[dict]:
    """The records of every job of the push of `job`, by its plan (a job in stages carries it), in stage order; a
    planned job without a record yet is {"job", "kind", "stage", "status": None}. [] for a job of no plan."""
    plan = show_job(store, job).get("plan")
    if not isinstance(plan, list):
        return []
    found = []
    for entry in (e for e in plan if isinstance(e, dict) and isinstance(e.get("job"), str)):
        try:
            found.append(show_job(store, entry["job"]))
        except (StoreMissing, BadInput):
            found.append({**entry, "status": None})
    return sorted(found, key=lambda record: record.get("stage") if isinstance(record.get("stage"), int) else 0)


def format_push(jobs: list[dict]) -> str:
    """One line per job of a push: its stage, then the table's columns."""
    lines = format_job_table(jobs).split("\n")
    stages = ["STAGE"] + [_cell(job.get("stage")) for job in jobs]
    width = max(len(stage) for stage in stages)
    return "\n".join(f"{stage:<{width}}  {line}" for stage, line in zip(stages, lines))


def job_log(store: ArtifactStore, job: str) -> bytes:
    """The output of `job` (its log.txt)."""
    key = job_key(job, "log.txt")
    try:
        return store.get_bytes(key)
    except StoreMissing as error:
        if error.key is None:
            raise
    show_job(store, job)  # says so when there is no such job at all
    raise StoreMissing(f"job {job} has no log in the artifact store {store.url} (no {key}): "
                       "it ended before it could write one; `trivialci history show` says why", key)


def job_key(job: str, name: str) -> str:
    """jobs/JOB/NAME, for a job id given by a person (BadInput unless it is one name)."""
    if not isinstance(job, str) or "/" in job or not is_key(f"{JOBS}{job}/{name}"):
        raise BadInput(f"{job!r} is not a job id (YYYYmmddTHHMMSSZ-xxxxxx): `trivialci history list` shows them")
    return f"{JOBS}{job}/{name}"


def parse_record(data: bytes, where: str) -> dict:
    """A job.json's object; BadInput (naming `where`) when it is not one."""
    try:
        record = json.loads(data)
    except (ValueError, RecursionError) as error:
        raise BadInput(f"{where} is damaged: it is not valid JSON ({error})") from None
    if not isinstance(record, dict):
        raise BadInput(f"{where} is damaged: it is JSON but not an object")
    return record


def _listed_record(store: ArtifactStore, job: str) -> dict | None:
    """The record under jobs/JOB/, its "job" being the directory's name; None while there is none."""
    key = f"{JOBS}{job}/job.json"
    try:
        return {**parse_record(store.get_bytes(key), key), "job": job}
    except StoreMissing:
        return None
    except BadInput as error:
        return {"job": job, "status": UNREADABLE, "reason": str(error)}


def format_job_table(jobs: list[dict]) -> str:
    """The jobs as a table with a header line, one line per job."""
    rows = [COLUMNS] + [_row(job) for job in jobs]
    widths = [max(len(row[column]) for row in rows) for column in range(len(COLUMNS))]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows)


def _row(job: dict) -> tuple[str, ...]:
    cells = [job.get(name) for name in ("job", "status", "branch", "sha", "kind", "worker")]
    cells[3] = cells[3][:12] if isinstance(cells[3], str) else cells[3]
    return (*(_cell(value) for value in cells), _when(job.get("queued")), _duration(job.get("run_time")))


def format_job_record(record: dict) -> str:
    """One line per field, the known ones first; a list has one line per item."""
    names = [name for name in JOB_FIELDS if name in record] + sorted(set(record) - set(JOB_FIELDS))
    width = max((len(_text(name)) for name in names), default=0)
    return "\n".join(line for name in names for line in _field_lines(_text(name), record[name], width))


def _field_lines(label: str, value, width: int) -> list[str]:
    items = value if isinstance(value, list) and value else [value]
    return [f"{label if i == 0 else '':<{width}}  {_text(item)}".rstrip() for i, item in enumerate(items)]


def _text(value) -> str:
    """`value` for a terminal: '-' for nothing, JSON for non-text, control characters escaped."""
    if value is None or value == "":
        return "-"
    return printable(value if isinstance(value, str) else json.dumps(value))


def _cell(value) -> str:
    text = _text(value)
    return text if len(text) <= MAX_CELL else text[:MAX_CELL - 1] + "…"


def _when(stamp) -> str:
    """An ISO UTC time as `YYYY-MM-DD HH:MM:SS`."""
    if isinstance(stamp, str) and _ISO_TIME.match(stamp):
        return f"{stamp[:10]} {stamp[11:19]}"
    return _cell(stamp)


def _duration(seconds) -> str:
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not math.isfinite(seconds) or seconds < 0:
        return _cell(seconds)
    if seconds < 60:
        return f"{seconds:.1f}s"
    if seconds < 3600:
        return f"{int(seconds // 60)}m{int(seconds % 60):02d}s"
    return f"{int(seconds // 3600)}h{int(seconds % 3600 // 60):02d}m"
