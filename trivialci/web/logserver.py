"""The worker's log server: its jobs' live logs over HTTP, read-only, from WORKDIR/logs/.

Workers never send their console logs to the hub; each serves its own. Only
the CLI starts it (`trivialci worker --log-listen HOST:PORT`, 127.0.0.1 and a
free port by default) and advertises its URL as "log_url" in worker.json.

    GET /logs/JOB              the log (text/plain; charset=utf-8); ?offset=N from byte N;
                               a Range (ranges.py: one range, RFC 9110) gives 206, or 416 past the end
    GET /logs/JOB?follow=1     the log from ?offset=N (default 0), then its new bytes as they are
                               written (chunked), until the job has ended
    GET /logs/JOB.html         a page that follows the log live
Every answer has X-Content-Type-Options: nosniff and a Content-Security-Policy
that allows nothing but the page's own script (by nonce) and fetches to itself.
A log answer has X-Log-Complete: 1 once the job has ended (WORKDIR/logs/JOB.ended
exists, see buildlog.py). JOB must be a job id (jobs.JOB_ID) and is never
URL-decoded, so no other file can be named; WORKDIR/logs/JOB.log is opened
without following a link and served only if it is a regular file (a build that
put a link to /etc/shadow there gets a 404), and it is sent from that one
descriptor, a chunk at a time. A log that is not on this disk redirects (302)
to the hub's web UI when one is known, else is a 404 that says where the log
is kept. Connections, deadlines, the Host check and request bodies follow
serving.py.
"""

import errno
import html
import os
import secrets
import socket
import threading
import time
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from ..worker.buildlog import ended_marker
from ..errors import BadInput
from ..jobs import is_job_id
from ..spool.files import CHUNK_BYTES, open_regular, read_chunks
from .hosts import HostCheck
from .serving import PLAIN_HEADERS, GuardedHandler, GuardedServer, OpenFile

POLL = 0.05  # seconds between looks at a followed log
FOLLOW_LIMIT = 6 * 3600.0  # a follower of a log that never completes (its worker died) is ended; it may reconnect


class LogServer:
    """A ThreadingHTTPServer on its own thread; stop() ends followers, closes the socket and joins every thread."""

    def __init__(self, logs: Path, host: str = "127.0.0.1", port: int = 0, hub_ui: str | None = None,
                 allow_hosts=()):
        self.stopping = threading.Event()
        hosts = HostCheck.serving(host, allow_hosts)
        try:
            self.httpd = GuardedServer((host, port), _Handler, hosts, "log server")
        except OSError as error:
            raise BadInput(f"the log server cannot listen on {host}:{port}: {error.strerror}; "
                           "pass --log-listen HOST:PORT with a free port, or --log-listen off") from None
        # The workdir's own path may pass through a link (~/.cache); nothing below it is followed.
        self.httpd.logs, self.httpd.hub_ui, self.httpd.stopping = Path(os.path.realpath(logs)), hub_ui, self.stopping
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.2,), name="log server", daemon=True)

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{socket.gethostname() if host in ('0.0.0.0', '') else host}:{port}"

    def start(self) -> "LogServer":
        self.thread.start()
        return self

    def stop(self) -> None:
        self.stopping.set()  # followers end their streams within POLL
        self.httpd.shutdown()
        self.httpd.close(after=1.0)  # cuts an idle keep-alive or a stuck reader, then joins the request threads
        self.thread.join()

    def __enter__(self) -> "LogServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def parse_listen(text: str) -> tuple[str, int] | None:
    """HOST:PORT from --log-listen, or None for `off`."""
    if text == "off":
        return None
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit() or int(port) > 65535:
        raise BadInput(f"--log-listen {text!r} is not HOST:PORT (e.g. 127.0.0.1:8081, or 127.0.0.1:0 for a free "
                       "port) or `off`")
    return host, int(port)


class _Handler(GuardedHandler):
    server_version = "trivialci-logs"
    sys_version = ""

    def answer_get(self) -> None:
        url = urlsplit(self.path)
        name = url.path[len("/logs/"):] if url.path.startswith("/logs/") else ""
        page, job = name.endswith(".html"), name.removesuffix(".html")
        if not is_job_id(job):  # never decoded, never joined as a path unless it is a job id
            return self._text(404, "not found: this server has /logs/JOB, /logs/JOB?follow=1 and /logs/JOB.html\n")
        log_file = self._open(job)
        if log_file is None:
            return
        with log_file:
            if page:
                return self._page(job)
            query = parse_qs(url.query)
            if query.get("follow", ["0"])[0] not in ("0", ""):
                return self._follow(job, log_file.fd, _offset(query))
            self._serve(job, log_file, _offset(query))

    def _open(self, job: str) -> OpenFile | None:
        """WORKDIR/logs/JOB.log, a regular file opened without following a link; None once refused."""
        try:
            return OpenFile(open_regular(f"{job}.log", root=self.server.logs))
        except FileNotFoundError:
            self._missing(job)
        except OSError as error:
            reason = "a link, a FIFO or a device" if error.errno in (errno.ELOOP, errno.EINVAL) else error.strerror
            self._text(404, f"the log of job {job} here is not a regular file ({reason}): it is not served\n")
        return None

    def _serve(self, job: str, log_file: OpenFile, offset: int) -> None:
        if offset and "Range" not in self.headers:  # the page's ?offset=N: the bytes from N on (none past the end)
            first = min(offset, log_file.size)
            self.start_answer(200, "text/plain; charset=utf-8", log_file.size - first, self._log_headers(job))
            return self.send_chunks(log_file.chunks(first), log_file.size - first)
        self.send_value(log_file, "text/plain; charset=utf-8", self._log_headers(job))

    def _follow(self, job: str, fd: int, offset: int) -> None:
        self.send_response(200)
        self._headers("text/plain; charset=utf-8", {"Transfer-Encoding": "chunked", **self._log_headers(job)})
        self.end_headers()
        self.close_connection = True
        self._stream(job, fd, offset, time.monotonic() + FOLLOW_LIMIT)
        self.wfile.write(b"0\r\n\r\n")

    def _stream(self, job: str, fd: int, offset: int, deadline: float) -> None:
        """The log's bytes from `offset` as they are written, read from the one descriptor opened at first."""
        while not self.server.stopping.is_set() and time.monotonic() < deadline:
            complete = self._complete(job)  # looked at before reading: bytes written before the end are all sent
            size = os.fstat(fd).st_size
            for data in read_chunks(fd, offset, size - 1, CHUNK_BYTES):
                offset += self._chunk(data)
            if complete and offset >= size:
                return
            self.server.stopping.wait(POLL)

    def _chunk(self, data: bytes) -> int:
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()
        return len(data)

    def _missing(self, job: str) -> None:
        if self.server.hub_ui:
            self.send_response(302)
            self._headers("text/plain; charset=utf-8", {"Location": f"{self.server.hub_ui.rstrip('/')}/jobs/{job}",
                                                        "Content-Length": "0"})
            return self.end_headers()
        self._text(404, f"no log of job {job} on this worker: it ran elsewhere, or its log was removed here. "
                        f"A finished job's log is in the artifact store: trivialci history log {job}\n")

    def _page(self, job: str) -> None:
        nonce = secrets.token_urlsafe(16)
        body = PAGE.format(job=html.escape(job), nonce=nonce).encode()
        csp = f"default-src 'none'; script-src 'nonce-{nonce}'; style-src 'nonce-{nonce}'; connect-src 'self'"
        self.send_bytes(200, "text/html; charset=utf-8", body, {"Content-Security-Policy": csp})

    def _log_headers(self, job: str) -> dict:
        return {"X-Log-Complete": "1"} if self._complete(job) else {}

    def _complete(self, job: str) -> bool:
        return ended_marker(self.server.logs / f"{job}.log").exists()

    def _text(self, status: int, text: str) -> None:
        self.send_bytes(status, "text/plain; charset=utf-8", text.encode())

    def common_headers(self) -> dict:
        return {**PLAIN_HEADERS, "Accept-Ranges": "bytes"}

    def _headers(self, content_type: str, extra: dict) -> None:
        for name, value in {"Content-Type": content_type, **self.common_headers(), **extra}.items():
            self.send_header(name, value)

    def version_string(self) -> str:
        return self.server_version

    def do_HEAD(self) -> None:
        self._text(405, "only GET\n")


def _offset(query: dict) -> int:
    text = query.get("offset", ["0"])[0]
    return int(text) if text.isdigit() else 0


PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>log of {job}</title>
<style nonce="{nonce}">body{{font-family:sans-serif;margin:1em}}pre{{white-space:pre-wrap;font-size:13px}}</style>
</head><body>
<h1>{job}</h1><p id="state">following…</p><pre id="log"></pre>
<script nonce="{nonce}">
(function () {{
  var offset = 0, decoder = new TextDecoder("utf-8"), pre = document.getElementById("log");
  var state = document.getElementById("state"), url = location.pathname.replace(/\\.html$/, "");
  function poll() {{
    fetch(url + "?offset=" + offset, {{cache: "no-store"}}).then(function (response) {{
      if (!response.ok) throw new Error("HTTP " + response.status);
      var complete = response.headers.get("X-Log-Complete") === "1";
      return response.arrayBuffer().then(function (bytes) {{
        offset += bytes.byteLength;
        pre.appendChild(document.createTextNode(decoder.decode(bytes, {{stream: true}})));
        if (complete && bytes.byteLength === 0) {{ state.textContent = "the job has ended"; return; }}
        setTimeout(poll, bytes.byteLength ? 0 : 500);
      }});
    }}).catch(function (error) {{ state.textContent = "stopped: " + error.message; }});
  }}
  poll();
}})();
</script>
</body></html>
"""
