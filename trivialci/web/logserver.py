"""The worker's log server: its jobs' live logs over HTTP, read-only, from WORKDIR/logs/.

Workers never send their console logs to the hub; each serves its own. Only
the CLI starts it (`trivialci worker --log-listen HOST:PORT`, 127.0.0.1 and a
free port by default) and advertises its URL as "log_url" in worker.json.

    GET /logs/JOB              the log (text/plain; charset=utf-8); ?offset=N from byte N;
                               `Range: bytes=N-` or `bytes=N-M` gives 206 with Content-Range
    GET /logs/JOB?follow=1     the log from ?offset=N (default 0), then its new bytes as they are
                               written (chunked), until the job has ended
    GET /logs/JOB.html         a page that follows the log live
Every answer has X-Content-Type-Options: nosniff and a Content-Security-Policy
that allows nothing but the page's own script (by nonce) and fetches to itself.
A log answer has X-Log-Complete: 1 once the job has ended (WORKDIR/logs/JOB.ended
exists, see buildlog.py). JOB must be a job id (jobs.JOB_ID) and is never
URL-decoded, so no other file can be named. A log that is not on this disk
redirects (302) to the hub's web UI when one is known, else is a 404 that says
where the log is kept.
"""

import html
import http.server
import logging
import re
import secrets
import socket
import threading
import time
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from ..worker.buildlog import ended_marker
from ..errors import BadInput
from ..jobs import is_job_id

log = logging.getLogger("trivialci")

POLL = 0.05  # seconds between looks at a followed log
FOLLOW_LIMIT = 6 * 3600.0  # a follower of a log that never completes (its worker died) is ended; it may reconnect
RANGE = re.compile(r"bytes=(\d+)-(\d*)\Z")


class LogServer:
    """A ThreadingHTTPServer on its own thread; stop() ends followers, closes the socket and joins every thread."""

    def __init__(self, logs: Path, host: str = "127.0.0.1", port: int = 0, hub_ui: str | None = None):
        self.stopping = threading.Event()
        try:
            self.httpd = _Server((host, port), _Handler)
        except OSError as error:
            raise BadInput(f"the log server cannot listen on {host}:{port}: {error.strerror}; "
                           "pass --log-listen HOST:PORT with a free port, or --log-listen off") from None
        self.httpd.logs, self.httpd.hub_ui, self.httpd.stopping = Path(logs), hub_ui, self.stopping
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
        self.httpd.drop_connections(after=1.0)  # an idle keep-alive or a stuck reader would hold its thread
        self.httpd.server_close()  # joins the request threads
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


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = False  # server_close() joins them: a stopped server leaves no thread behind
    block_on_close = True

    def __init__(self, *args):
        super().__init__(*args)
        self.connections, self.changed = set(), threading.Condition()

    def process_request(self, request, client_address) -> None:
        with self.changed:
            self.connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request) -> None:
        with self.changed:
            self.connections.discard(request)
            self.changed.notify_all()
        super().shutdown_request(request)

    def drop_connections(self, after: float) -> None:
        """Give open connections `after` seconds to end by themselves, then cut them."""
        with self.changed:
            self.changed.wait_for(lambda: not self.connections, timeout=after)
            for connection in self.connections:
                try:
                    connection.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 60  # seconds a client may take to send a request or read an answer
    server_version = "trivialci-logs"
    sys_version = ""

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        name = url.path[len("/logs/"):] if url.path.startswith("/logs/") else ""
        page, job = name.endswith(".html"), name.removesuffix(".html")
        if not is_job_id(job):  # never decoded, never joined as a path unless it is a job id
            return self._text(404, "not found: this server has /logs/JOB, /logs/JOB?follow=1 and /logs/JOB.html\n")
        path = self.server.logs / f"{job}.log"
        if not path.is_file():
            return self._missing(job)
        if page:
            return self._page(job)
        query = parse_qs(url.query)
        if query.get("follow", ["0"])[0] not in ("0", ""):
            return self._follow(path, _offset(query))
        self._serve(path, _offset(query))

    def _serve(self, path: Path, offset: int) -> None:
        size, ranged = path.stat().st_size, RANGE.match(self.headers.get("Range", "").strip())
        first, last = (int(ranged[1]), int(ranged[2] or size - 1)) if ranged else (offset, size - 1)
        if ranged and first >= size:
            return self._text(416, f"the log has {size} bytes\n", {"Content-Range": f"bytes */{size}"})
        body = _read(path, first, max(0, min(last, size - 1) - first + 1))
        extra = {"Content-Range": f"bytes {first}-{first + len(body) - 1}/{size}"} if ranged else {}
        self._send(206 if ranged else 200, body, "text/plain; charset=utf-8", {**extra, **self._log_headers(path)})

    def _follow(self, path: Path, offset: int) -> None:
        self.send_response(200)
        self._headers("text/plain; charset=utf-8", {"Transfer-Encoding": "chunked", **self._log_headers(path)})
        self.end_headers()
        self.close_connection = True
        try:
            self._stream(path, offset, time.monotonic() + FOLLOW_LIMIT)
            self.wfile.write(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass  # the reader went away

    def _stream(self, path: Path, offset: int, deadline: float) -> None:
        while not self.server.stopping.is_set() and time.monotonic() < deadline:
            complete = _complete(path)  # looked at before reading: bytes written before the end are all sent
            offset += self._chunk(_read(path, offset, 1 << 20))
            if complete and offset >= path.stat().st_size:
                return
            self.server.stopping.wait(POLL)

    def _chunk(self, data: bytes) -> int:
        if data:
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
        self._send(200, body, "text/html; charset=utf-8", {"Content-Security-Policy": csp})

    def _log_headers(self, path: Path) -> dict:
        return {"X-Log-Complete": "1"} if _complete(path) else {}

    def _text(self, status: int, text: str, extra: dict | None = None) -> None:
        self._send(status, text.encode(), "text/plain; charset=utf-8", extra or {})

    def _send(self, status: int, body: bytes, content_type: str, extra: dict) -> None:
        self.send_response(status)
        self._headers(content_type, {"Content-Length": str(len(body)), **extra})
        self.end_headers()
        self.wfile.write(body)

    def _headers(self, content_type: str, extra: dict) -> None:
        headers = {"Content-Type": content_type, "X-Content-Type-Options": "nosniff", "Cache-Control": "no-store",
                   "Content-Security-Policy": "default-src 'none'", "Referrer-Policy": "no-referrer",
                   "Accept-Ranges": "bytes", **extra}
        for name, value in headers.items():
            self.send_header(name, value)

    def version_string(self) -> str:
        return self.server_version

    def do_HEAD(self) -> None:
        self._text(405, "only GET\n")

    def log_message(self, format: str, *args) -> None:
        log.debug("log server: %s %s", self.address_string(), format % args)


def _offset(query: dict) -> int:
    text = query.get("offset", ["0"])[0]
    return int(text) if text.isdigit() else 0


def _complete(path: Path) -> bool:
    return ended_marker(path).exists()


def _read(path: Path, offset: int, count: int) -> bytes:
    if count <= 0:
        return b""
    with open(path, "rb") as handle:
        handle.seek(offset)
        return handle.read(count)


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
