"""The web UI's pages as views: sections of tables and links, made of plain values.

A view is what both renderers draw: pages.py turns it into escaped HTML on
the server, and the page's inline script draws the same view from the JSON
twin with createElement and textContent, so no value is ever parsed as markup.

    section = {"title": str, "links": [cell]}  or  {"title": str, "columns": [str], "rows": [[cell]], "empty": str}
    cell    = text | number | null | {"text": str, "href": str?, "download": bool?, "status": STATUS?}

An href is a path this UI made (every part quoted) or an http(s) URL; a status
is one of the job statuses, so it can name a CSS class.
"""

import json
from urllib.parse import quote

from ..jobs import JobStatus, is_job_id

STATUSES = {status.value for status in JobStatus}
JOB_COLUMNS = ["job", "branch", "sha", "kind", "status", "worker", "queued", "started", "duration", "attempt"]


def jobs_view(data: dict) -> list[dict]:
    rows = [_job_row(job) for job in data["jobs"]]
    source = "" if data["source"] == "state" else " (from the artifact store: the hub's state/ is empty)"
    return [{"title": f"jobs, page {data['page'] + 1}{source}", "columns": JOB_COLUMNS, "rows": rows,
             "empty": "no jobs yet"}, {"title": "", "links": _pager(data)}]


def _job_row(job: dict) -> list:
    sha = job.get("sha")
    return [job_link(job.get("job")), job.get("branch"), sha[:12] if isinstance(sha, str) else sha,
            job.get("kind"), status_cell(job.get("status")), job.get("worker"), when(job.get("queued")),
            when(job.get("started")), seconds(job.get("run_time")), job.get("attempt")]


def _pager(data: dict) -> list:
    links = []
    if data["page"] > 0:
        links.append({"text": "newer", "href": f"/?page={data['page'] - 1}"})
    if data["more"]:
        links.append({"text": "older", "href": f"/?page={data['page'] + 1}"})
    return links


def job_view(job_id: str, data: dict) -> list[dict]:
    record = data["job"]
    rows = [[name, _plain(record[name])] for name in sorted(record)]
    links = [{"text": "live log on the worker", "href": data["log_url"] + ".html"}] if data["log_url"] else []
    if data["stored_log"]:
        links.append({"text": "stored log", "href": f"/jobs/{job_id}/log"})
    files = [[{"text": name, "href": f"/jobs/{job_id}/files/{quote(name)}", "download": True}]
             for name in data["files"]]
    held = [f"held: it runs once someone approves it with `trivialci approve {job_id}`"] \
        if record.get("status") == JobStatus.HELD else []
    return [{"title": "status", "links": [status_cell(record.get("status")), *held]},
            {"title": "logs", "links": links or ["no log yet"]},
            {"title": "artifacts", "columns": ["file"], "rows": files, "empty": "no artifacts stored"},
            {"title": "record", "columns": ["field", "value"], "rows": rows, "empty": ""}]


def queue_view(data: dict) -> list[dict]:
    paused = [{"title": "", "links": ["dispatch paused: state/PAUSE exists"]}] if data["paused"] else []
    kinds = [{"title": f"queue of {kind}", "columns": ["#", "job", "branch", "sha", "queued", "attempt"],
              "rows": [[n + 1, *_queued_row(job)] for n, job in enumerate(jobs)], "empty": "empty"}
             for kind, jobs in sorted(data["queue"].items())]
    return paused + (kinds or [{"title": "queue", "links": ["nothing is queued"]}]) + _held_view(data.get("held", []))


def _held_view(held: list[dict]) -> list[dict]:
    """Jobs that wait for a person: a fork's pull request runs only after `trivialci approve JOB`."""
    if not held:
        return []
    rows = [[job_link(j.get("job")), j.get("kind"), j.get("branch"), _sha(j), j.get("head_repo"), j.get("author"),
             when(j.get("queued"))] for j in held]
    return [{"title": "held: waiting for trivialci approve JOB",
             "columns": ["job", "kind", "branch", "sha", "from", "author", "held since"], "rows": rows, "empty": ""}]


def _sha(job: dict):
    sha = job.get("sha")
    return sha[:12] if isinstance(sha, str) else sha


def _queued_row(job: dict) -> list:
    sha = job.get("sha")
    return [job_link(job.get("job")), job.get("branch"), sha[:12] if isinstance(sha, str) else sha,
            when(job.get("queued")), job.get("attempt")]


def workers_view(workers: list[dict]) -> list[dict]:
    rows = [[w["name"], w["kind"], w["state"], seconds(w["heartbeat_age"], "no heartbeat"), job_link(w["job"])]
            for w in workers]
    return [{"title": "workers", "columns": ["name", "kind", "state", "heartbeat age", "job"], "rows": rows,
             "empty": "no workers yet"}]


def events_view(events: list[dict]) -> list[dict]:
    rows = [[when(e["started"]), e["event"], e["type"], e["where"], e["reason"], seconds(e["duration"]),
             {"text": "log", "href": f"/events/log/{quote(e['log'])}"} if e["log"] else None] for e in events]
    return [{"title": "the hub's events of today and yesterday, newest first",
             "columns": ["started", "event", "type", "result", "reason", "duration", "log"], "rows": rows,
             "empty": "no events handled today or yesterday"}]


def job_link(job_id) -> dict | None:
    if not isinstance(job_id, str) or not is_job_id(job_id):
        return job_id
    return {"text": job_id, "href": f"/jobs/{job_id}"}


def status_cell(status) -> dict:
    return {"text": status, "status": status} if status in STATUSES else {"text": status}


def when(stamp):
    """An ISO UTC time as `YYYY-MM-DD HH:MM:SS`; anything else as it is."""
    if isinstance(stamp, str) and len(stamp) >= 19 and stamp[10] == "T":
        return f"{stamp[:10]} {stamp[11:19]}"
    return stamp


def seconds(value, missing=None):
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return missing if value is None else value
    return f"{value:.1f}s"


def _plain(value):
    return value if value is None or isinstance(value, (str, int, float)) else json.dumps(value)
