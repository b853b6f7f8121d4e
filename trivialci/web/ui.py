"""The hub's web UI: read-only pages of jobs, branches, queue, workers and events, served beside the hub's loop.

    /                      jobs as pushes, newest first, 50 jobs a page (?page=N)
    /branches              each branch's newest push; pushes that built nothing, and why
    /branch?name=B         a branch's pushes and run-time charts (&repo=R to choose among repositories)
    /jobs/JOB              a job: summary, run-time chart, its log inline (?from=N&line=K, ?from=last)
    /jobs/JOB/log.part     lines of its log from ?from=N as HTML, for the page that follows it live
    /jobs/JOB/log          the stored log.txt, as text/plain
    /jobs/JOB/files/NAME   a stored artifact, as a download
    /queue  /workers  /events (?all=1: with ticks and housekeeping)
    /events/log/WHERE/DAY/NAME.log   the .log of a handled event (done/ or failed/, today or yesterday)
    /badge/BRANCH.svg      the status of the newest job of BRANCH

Every page has a JSON twin: the same path with `.json` (`/index.json` for /),
or `Accept: application/json`. Pages are Jinja2 templates drawn here only
(render.py); with `X-Part: main` a page answers its changing part alone. The
server runs in its own daemon thread and only reads files (and a running
job's log from its worker, logpage.py), so it can never hold up the hub's
loop. It serves nothing but state/, done/, failed/, the heartbeats and the
artifact store: job ids must be job ids, artifact names store keys, and any
path with '..' (encoded or not) is a 404; no link is followed (data.py). Logs
and artifacts are streamed, a chunk at a time, with Range; a log shown on a
page is read a page at a time. It binds 127.0.0.1 unless told otherwise;
connections, deadlines, the Host check and request bodies follow serving.py.
"""

import json
import re
import secrets
import socket
import threading
from pathlib import Path
from urllib.parse import parse_qs, quote, unquote, urlsplit

from . import logpage, pages, render
from ..errors import BadInput
from ..jobs import is_job_id
from ..store import ArtifactStore, is_key
from .data import HOUSEKEEPING, WebData
from .pushes import FINAL_WORDS
from .hosts import HostCheck
from .serving import GuardedHandler, GuardedServer

DEFAULT_HOST = "127.0.0.1"
MAX_PAGE = 100000
JOB_PATH = re.compile(r"/jobs/([^/]+)(\.json)?\Z")
PAGES = {"/": "jobs", "/index.json": "jobs", "/branches": "branches", "/branch": "branch", "/queue": "queue",
         "/workers": "workers", "/events": "events"}


class WebUI:
    """A running web UI; close() stops it and joins its thread."""

    def __init__(self, spool, store: ArtifactStore | None, host: str = DEFAULT_HOST, port: int = 0, allow_hosts=()):
        handler = type("Handler", (Handler,), {"data": WebData(spool, store)})
        hosts = HostCheck.serving(host, allow_hosts)
        try:
            self.server = GuardedServer((host, port), handler, hosts, "web UI")
        except OSError as error:
            raise BadInput(f"the web UI cannot listen on {host}:{port}: {error.strerror}; "
                           "pick another --ui HOST:PORT (port 0 picks a free one)") from None
        self.thread = threading.Thread(target=self.server.serve_forever, name="trivialci-webui", daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}/"

    def close(self) -> None:
        self.server.shutdown()
        self.server.close()
        self.thread.join()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def parse_address(text: str) -> tuple[str, int]:
    """HOST:PORT as given to --ui; BadInput for a person when it is not one."""
    host, _, port = (text or "").rpartition(":")
    if not host or not port.isdigit() or int(port) > 65535:
        raise BadInput(f"--ui {text!r} is not HOST:PORT: write e.g. 127.0.0.1:8080 (port 0 picks a free one)")
    return host.strip("[]"), int(port)


def free_address(text: str) -> str:
    """HOST:PORT itself when that port is free now, else HOST:N with a port that was free a moment ago."""
    host, port = parse_address(text)
    for candidate in (port, 0):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            try:
                probe.bind((host, candidate))
            except OSError:
                continue
            return f"{host}:{probe.getsockname()[1]}"
    raise BadInput(f"the web UI cannot listen on {host}: no port there is free; pass --ui HOST:PORT or --ui off")


class Handler(GuardedHandler):
    """One request: route it, answer with security headers; a page that fails is a 500 (serving.py)."""

    data: WebData

    def version_string(self) -> str:
        return "TrivialCi"

    def answer_get(self):
        self.route(urlsplit(self.path))

    def do_HEAD(self):
        self.do_GET()

    def common_headers(self) -> dict:
        return {**security_headers(None), "Cache-Control": "no-store", "Vary": "Accept"}

    def route(self, url) -> None:
        raw = url.path
        path = unquote(raw)
        if ".." in path or "\\" in path or "\0" in path or ".." in unquote(path):
            return self.not_found()
        wants_json = "application/json" in (self.headers.get("Accept") or "") or path.endswith(".json")
        base = path[:-5] if path.endswith(".json") and path != "/index.json" else path
        if base in PAGES:
            return self.page(PAGES[base], url, wants_json)
        if path.startswith("/badge/") and path.endswith(".svg"):
            return self.badge(path[len("/badge/"):-len(".svg")])
        if path.startswith("/events/log/"):
            return self.event_log(path[len("/events/log/"):].split("/"))
        return self.job_route(url, wants_json)

    def job_route(self, url, wants_json: bool) -> None:
        parts = url.path.split("/")  # the raw path: a '/' encoded inside a file name stays in that name
        if len(parts) < 3 or parts[1] != "jobs" or not is_job_id(parts[2].removesuffix(".json")):
            return self.not_found()
        job_id = parts[2].removesuffix(".json")
        if len(parts) == 3:
            return self.job_page(job_id, url, wants_json or parts[2].endswith(".json"))
        if parts[3:] == ["log"]:
            return self.stored_text(f"jobs/{job_id}/log.txt")
        if parts[3:] == ["log.part"]:
            return self.log_part(job_id, url)
        if len(parts) >= 5 and parts[3] == "files":
            return self.artifact(job_id, unquote("/".join(parts[4:])))
        return self.not_found()

    # --- pages ----------------------------------------------------------

    def page(self, name: str, url, wants_json: bool) -> None:
        query = parse_qs(url.query)
        if name == "jobs":
            data = self.data.jobs_page(_page_number(query.get("page", ["0"])[0]))
            return self.send_view("jobs.html", "jobs", data, wants_json)
        if name == "branches":
            return self.send_view("branches.html", "branches", self.data.branches(), wants_json)
        if name == "branch":
            branch, repo = query.get("name", [""])[0], query.get("repo", [None])[0]
            return self.send_view("branch.html", f"branch {branch}", self.data.branch_page(branch, repo), wants_json,
                                  "branches")
        if name == "queue":
            return self.send_view("queue.html", "queue", self.data.queue(), wants_json)
        if name == "workers":
            return self.send_view("workers.html", "workers", {"workers": self.data.workers()}, wants_json)
        everything = query.get("all", [""])[0] not in ("", "0")
        data = {"events": self.data.events(housekeeping=everything), "housekeeping": everything,
                "hidden": sorted(HOUSEKEEPING)}
        return self.send_view("events.html", "events", data, wants_json)

    def job_page(self, job_id: str, url, wants_json: bool) -> None:
        data = self.data.job(job_id)
        if data is None:
            return self.not_found(f"no job {job_id} in the hub's state/ or the artifact store\n")
        record = data["job"]
        data["run_times"] = self.data.run_times(record.get("branch"), record.get("kind"))
        if wants_json:
            return self.send_view("job.html", "", data, True)
        first, line = logpage.parse_position(parse_qs(url.query))
        refresh = self.headers.get("X-Part") == "main"  # the log below the main part is followed by itself
        source, log = ("none", None) if refresh else self._log_page(job_id, data, first, line)
        final = record.get("status") in FINAL_WORDS and source != "live"
        values = {**data, "job_id": job_id, "log": log, "log_source": source,
                  "follow": not final and first == 0}
        title = f"{record.get('kind')} of {record.get('branch')} {str(record.get('sha'))[:7]}"
        self.send_view("job.html", title, values, False, "jobs")

    def _log_page(self, job_id: str, data: dict, first: int, line: int | None):
        """("stored" | "live" | "none", the page of the log from `first`)."""
        if data["stored_log"]:
            key = f"jobs/{job_id}/log.txt"
            return "stored", logpage.stored_page(lambda: self.data.stored_value(key), first, line)
        if data["log_url"] and data["job"].get("status") not in FINAL_WORDS:
            page = logpage.live_page(data["log_url"], job_id, max(first, 0), line or 1)
            return ("live", page) if page else ("none", None)
        return "none", None

    def log_part(self, job_id: str, url) -> None:
        """The lines of a job's log from ?from=N (numbered from ?line=K) as HTML, for the page that follows it."""
        data = self.data.job(job_id)
        if data is None:
            return self.not_found()
        first, line = logpage.parse_position(parse_qs(url.query))
        source, log = self._log_page(job_id, data, max(first, 0), line or 1)
        headers = {"X-Log-Source": source}
        if log is not None:
            headers.update({"X-Next-Offset": str(log.next), "X-Next-Line": str(log.next_line),
                            "X-Log-More": "1" if log.more else "0", "X-Log-Complete": "1" if log.complete else "0"})
        else:
            headers["X-Log-Complete"] = "1" if data["job"].get("status") in FINAL_WORDS else "0"
        body = render.render("log_part.html", {"log": log}) if log and log.lines else ""
        self.send(200, "text/html; charset=utf-8", body.encode(), secrets.token_urlsafe(18), headers)

    def send_view(self, template: str, title: str, data: dict, wants_json: bool, here: str | None = None) -> None:
        if wants_json:
            body = json.dumps(data, indent=1, default=_jsonable).encode()
            return self.send(200, "application/json", body)
        nonce = secrets.token_urlsafe(18)
        part = self.headers.get("X-Part") == "main"
        html = render.render(template, {**data, "title": title, "nonce": nonce, "here": here or title}, part)
        self.send(200, "text/html; charset=utf-8", html.encode(), nonce)

    # --- files ----------------------------------------------------------

    def stored_text(self, key: str) -> None:
        self.send_file(self.data.stored_value(key), "text/plain; charset=utf-8", "not in the artifact store\n")

    def artifact(self, job_id: str, name: str) -> None:
        key = f"jobs/{job_id}/files/{name}"
        value = self.data.stored_value(key) if is_key(key) else None
        self.send_file(value, "application/octet-stream", "no such artifact\n",
                       {"Content-Disposition": f"attachment; filename*=UTF-8''{quote(Path(name).name)}"})

    def event_log(self, parts: list[str]) -> None:
        log_file = self.data.event_log(*parts) if len(parts) == 3 else None
        self.send_file(log_file, "text/plain; charset=utf-8", "no such log of today's or yesterday's events\n")

    def send_file(self, value, content_type: str, missing: str, extra: dict | None = None) -> None:
        """A store value or an open file, streamed (serving.send_value), then closed; 404 `missing` when None."""
        if value is None:
            return self.not_found(missing)
        with value:
            self.send_value(value, content_type, extra)

    def badge(self, branch: str) -> None:
        svg = pages.badge("build", self.data.branch_status(branch))
        self.send(200, "image/svg+xml; charset=utf-8", svg.encode())

    # --- answers --------------------------------------------------------

    def not_found(self, text: str = "not found\n") -> None:
        self.send_text(404, text)

    def send_text(self, status: int, text: str) -> None:
        self.send(status, "text/plain; charset=utf-8", text.encode())

    def send(self, status: int, content_type: str, body: bytes, nonce: str | None = None, extra=None) -> None:
        self.send_bytes(status, content_type, body, {**security_headers(nonce), **(extra or {})})


def security_headers(nonce: str | None) -> dict:
    """No sniffing, no referrer, no framing, and scripts and styles only by this response's nonce."""
    allowed = f"'nonce-{nonce}'" if nonce else "'none'"
    policy = (f"default-src 'none'; script-src {allowed}; style-src {allowed}; connect-src 'self'; "
              "img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
    return {"X-Content-Type-Options": "nosniff", "Content-Security-Policy": policy,
            "Referrer-Policy": "no-referrer", "X-Frame-Options": "DENY"}


def _jsonable(value):
    """What json cannot write by itself: a log page's named tuple is written by its fields."""
    return value._asdict() if hasattr(value, "_asdict") else str(value)


def _page_number(text: str) -> int:
    return min(int(text), MAX_PAGE) if text.isdigit() else 0
