"""The hub's webhook endpoint: POST /hooks/github, /hooks/gitea (Forgejo too), /hooks/gitlab.

A listener of its own, apart from the web UI, started by `trivialci hub
--webhook HOST:PORT` (off unless asked for). This module is the HTTP around
forge/receive.py, which decides what a delivery becomes; here:

    only POST /hooks/NAME                     404 for another path, 405 for another method
    a Content-Length of at most 25 MiB        411 without one, 413 over it (the body is not read)
    the body within READ_DEADLINE seconds     408 (a slow sender does not keep a thread for ever)
    at most MAX_CONNECTIONS at once           503 beyond (answered at once, before a thread is started),
    and MAX_LARGE bodies over 1 MiB           503 beyond (a 25 MiB body costs memory to read and parse)

Each answer is one line of text, and one line in the hub's log (forge, event,
status, reason, client). Connections close after each answer. The server runs
in daemon threads and only writes the inbox through `emit`, so it can never
hold up the hub's loop.
"""

import logging
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from ..errors import BadInput
from ..forge.hooks import text
from ..forge.receive import Answer, Receiver

log = logging.getLogger("trivialci")

MAX_BODY = 25 * 1024 * 1024  # GitHub's cap on a payload; larger deliveries are never sent
LARGE_BODY = 1024 * 1024
MAX_CONNECTIONS = 32
MAX_LARGE = 2
READ_DEADLINE = 30.0
SOCKET_TIMEOUT = 10.0
PATHS = ("/hooks/github", "/hooks/gitea", "/hooks/gitlab")


class WebhookServer:
    """A running endpoint; close() stops it and joins its thread."""

    def __init__(self, receiver: Receiver, host: str = "127.0.0.1", port: int = 0,
                 max_connections: int = MAX_CONNECTIONS):
        handler = type("Handler", (Handler,), {"receiver": receiver, "large": threading.BoundedSemaphore(MAX_LARGE)})
        try:
            self.server = _Server((host, port), handler, max_connections)
        except OSError as error:
            raise BadInput(f"the webhook endpoint cannot listen on {host}:{port}: {error.strerror}; "
                           "pick another --webhook HOST:PORT (port 0 picks a free one)") from None
        self.thread = threading.Thread(target=self.server.serve_forever, name="trivialci-webhook", daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}/hooks/"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def parse_address(text_: str) -> tuple[str, int]:
    """HOST:PORT as given to --webhook; BadInput for a person when it is not one."""
    host, _, port = (text_ or "").rpartition(":")
    if not host or not port.isdigit() or int(port) > 65535:
        raise BadInput(f"--webhook {text_!r} is not HOST:PORT: write e.g. 0.0.0.0:8081 (port 0 picks a free one)")
    return host.strip("[]"), int(port)


class _Server(ThreadingHTTPServer):
    """A threading server that answers 503 at once, without a thread, past `max_connections` connections."""

    daemon_threads = True

    def __init__(self, address, handler, max_connections: int):
        self.slots = threading.BoundedSemaphore(max_connections)
        super().__init__(address, handler)

    def process_request(self, request, client_address):
        if not self.slots.acquire(blocking=False):
            _answer_busy(request)
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self.slots.release()
            raise

    def process_request_thread(self, request, client_address):
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.slots.release()


def _answer_busy(request: socket.socket) -> None:
    body = b"busy: too many deliveries at once; redeliver in a moment\n"
    try:
        request.settimeout(1.0)
        request.sendall(b"HTTP/1.0 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\n"
                        b"Retry-After: 1\r\nConnection: close\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
    except OSError:
        pass


class Handler(BaseHTTPRequestHandler):
    receiver: Receiver
    large: threading.BoundedSemaphore
    timeout = SOCKET_TIMEOUT

    def version_string(self) -> str:
        return "TrivialCi"

    def log_message(self, format, *args):
        pass  # answers are logged once each, by answer()

    def do_POST(self):
        try:
            self.answer(self.handle_delivery())
        except Exception as error:  # a delivery that fails must not take the server down
            self.answer(Answer(500, f"the webhook endpoint failed on this delivery: {error!r}"))

    def do_GET(self):
        self.answer(Answer(405, "webhooks are POST requests") if self.path in PATHS else _not_found())

    do_PUT = do_DELETE = do_PATCH = do_HEAD = do_GET

    def handle_delivery(self) -> Answer:
        if self.path not in PATHS:
            return _not_found()
        length = self.headers.get("Content-Length")
        if length is None or not length.strip().isdigit():
            return Answer(411, "a Content-Length is needed")
        if int(length) > MAX_BODY:
            return Answer(413, f"the body is {int(length)} bytes, over the limit of {MAX_BODY}")
        if int(length) <= LARGE_BODY:
            return self.deliver(int(length))
        if not self.large.acquire(blocking=False):
            return Answer(503, "busy: too many large deliveries at once; redeliver in a moment")
        try:
            return self.deliver(int(length))
        finally:
            self.large.release()

    def deliver(self, length: int) -> Answer:
        body = self.read_body(length)
        if body is None:
            return Answer(408, f"the body did not arrive within {READ_DEADLINE:g} s")
        return self.receiver.receive(self.path[len("/hooks/"):], self.headers, body)

    def read_body(self, length: int) -> bytes | None:
        """The body, or None when it was not complete by the deadline (or the client went away)."""
        deadline, chunks, left = time.monotonic() + READ_DEADLINE, [], length
        try:
            while left and time.monotonic() < deadline:
                chunk = self.rfile.read1(min(left, 65536))
                if not chunk:
                    return None
                chunks.append(chunk)
                left -= len(chunk)
        except OSError:
            return None
        return b"".join(chunks) if not left else None

    def answer(self, answer: Answer) -> None:
        self.close_connection = True
        body = (answer.text.rstrip("\n") + "\n").encode()
        try:
            self.send_response(answer.status)
            for name, value in (("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body))),
                                ("Cache-Control", "no-store"), ("X-Content-Type-Options", "nosniff"),
                                ("Connection", "close")):
                self.send_header(name, value)
            if answer.status == 405:
                self.send_header("Allow", "POST")
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)
        except OSError:
            pass  # the client went away: the log line below still says what it was told
        self.log_answer(answer)

    def log_answer(self, answer: Answer) -> None:
        event = text(self.headers.get("X-GitHub-Event") or self.headers.get("X-Gitea-Event") or
                     self.headers.get("X-Gitlab-Event") or "", 40) if self.headers else ""
        where = text(self.path, 40) if isinstance(self.path, str) else "?"
        log.info("webhook: %s %s from %s: %d %s", where, event or "-", self.client_address[0], answer.status,
                 text(answer.text, 300))


def _not_found() -> Answer:
    return Answer(404, "not found: POST deliveries to /hooks/github, /hooks/gitea or /hooks/gitlab")
