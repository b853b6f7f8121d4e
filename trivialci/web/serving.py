"""What both HTTP servers share: a bounded number of connections, deadlines, a checked Host, no request bodies.

The hub's web UI and the worker's log server answer whoever reaches their
port, inside a process (the hub, a worker) whose own work must not suffer for
it. Every connection is held to these rules (docs/protocol.md, sections 25, 26):

- At most MAX_CONNECTIONS connections are open at once, one thread each. When
  one more arrives and all are open, of those waiting for a request the one
  whose time runs out first is closed to make room (a connection that never
  sent anything goes before a browser's kept-alive one); when every one is
  busy answering, new ones wait in the listen backlog, where they cost the
  process no descriptor.
- A new connection must deliver its request head (line, headers and any body)
  within HEAD_TIMEOUT seconds, a kept-alive one its next within IDLE_TIMEOUT
  seconds; otherwise it is closed. Each read or write of a socket gives up
  after IO_TIMEOUT seconds.
- A request must name an allowed Host (hosts.py), else 421 or 400.
- A body is never read as the next request: a Content-Length body of at most
  MAX_BODY bytes is read and dropped; a larger one (413), a chunked one or a
  Content-Length that is not one number (400) is refused, and the connection closed.
- Files are sent from a value with a size and chunks (store.StoredValue,
  OpenFile): never whole in memory, and with Range as ranges.py reads it.
- A client that goes away (reset, broken pipe, timeout) is one debug line,
  never a traceback; an error of the server itself is logged once.
"""

import errno
import logging
import os
import re
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from ..errors import TrivialCiError
from ..spool.files import read_chunks
from .hosts import HostCheck
from .ranges import Unsatisfiable, byte_range

log = logging.getLogger("trivialci")

MAX_CONNECTIONS = 64  # per server: the hub keeps ~960 of a 1024-descriptor limit for its own work
HEAD_TIMEOUT = 10.0  # seconds from accepting a connection until its request head is complete
IDLE_TIMEOUT = 30.0  # seconds a kept-alive connection may wait before its next request is complete
IO_TIMEOUT = 60.0  # seconds one read or write of a socket may block (a reader that stopped reading)
MAX_BODY = 64 << 10  # a request body read and dropped; a larger one is refused
BACKLOG = 128  # connections the kernel holds while all MAX_CONNECTIONS are busy
ROOM_WAIT = 0.5  # seconds the accepting thread waits for a free connection before it looks again
GONE = {errno.EPIPE, errno.ECONNRESET, errno.ECONNABORTED, errno.ENOTCONN, errno.ESHUTDOWN, errno.ETIMEDOUT}
PLAIN_HEADERS = {"X-Content-Type-Options": "nosniff", "Cache-Control": "no-store",
                 "Content-Security-Policy": "default-src 'none'", "Referrer-Policy": "no-referrer"}
_LENGTH = re.compile(r"[0-9]{1,18}\Z", re.ASCII)


def went_away(error: BaseException) -> bool:
    """Whether `error` means only that the client left (or stalled): nothing for the server's log."""
    return isinstance(error, (ConnectionError, TimeoutError)) or (
        isinstance(error, OSError) and error.errno in GONE)


class GuardedServer(ThreadingHTTPServer):
    """A ThreadingHTTPServer that keeps the rules of the module docstring; stop it with close()."""

    daemon_threads = False  # server_close() joins them: a stopped server leaves no thread behind
    block_on_close = True
    request_queue_size = BACKLOG

    def __init__(self, address, handler, hosts: HostCheck, name: str):
        self.hosts, self.name = hosts, name
        self.max_connections, self.head_timeout, self.idle_timeout = MAX_CONNECTIONS, HEAD_TIMEOUT, IDLE_TIMEOUT
        self.connections, self.waiting = set(), {}  # waiting: connection -> when its request must be complete
        self.changed = threading.Condition()
        super().__init__(address, handler)

    def get_request(self):
        """Accept a connection once there is room for it; OSError (the loop looks again) while there is none."""
        with self.changed:
            if len(self.connections) >= self.max_connections:
                self._close_nearest_deadline()
                self.changed.wait_for(lambda: len(self.connections) < self.max_connections, ROOM_WAIT)
            if len(self.connections) >= self.max_connections:
                raise OSError(errno.EAGAIN, "every connection is busy")
        try:
            return super().get_request()
        except OSError as error:
            if error.errno in (errno.EMFILE, errno.ENFILE):  # out of descriptors: do not spin on accept
                time.sleep(ROOM_WAIT)
            raise

    def process_request(self, request, client_address) -> None:
        with self.changed:
            self.connections.add(request)
            self.waiting[request] = time.monotonic() + self.head_timeout
        super().process_request(request, client_address)

    def shutdown_request(self, request) -> None:
        with self.changed:  # closed under the lock: no other thread cuts a descriptor number reused meanwhile
            self.connections.discard(request)
            self.waiting.pop(request, None)
            super().shutdown_request(request)
            self.changed.notify_all()

    def answering(self, request) -> None:
        """The request head is complete: no deadline while it is answered (IO_TIMEOUT still holds)."""
        with self.changed:
            self.waiting.pop(request, None)

    def awaiting(self, request) -> None:
        """The answer is sent: a kept-alive connection has IDLE_TIMEOUT for its next request."""
        with self.changed:
            if request in self.connections:
                self.waiting[request] = time.monotonic() + self.idle_timeout

    def service_actions(self) -> None:
        """Between two accepts (at least every poll interval): close the connections past their deadline."""
        now = time.monotonic()
        with self.changed:
            for request in [request for request, deadline in self.waiting.items() if deadline <= now]:
                del self.waiting[request]
                _cut(request)

    def _close_nearest_deadline(self) -> None:
        if self.waiting:
            request = min(self.waiting, key=self.waiting.get)
            del self.waiting[request]
            _cut(request)

    def drop_connections(self, after: float) -> None:
        """Give open connections `after` seconds to end by themselves, then cut them."""
        with self.changed:
            self.changed.wait_for(lambda: not self.connections, timeout=after)
            for request in self.connections:
                _cut(request)

    def close(self, after: float = 0.2) -> None:
        """After serve_forever has returned (shutdown()): end every connection, close the socket, join threads."""
        self.drop_connections(after)
        self.server_close()

    def handle_error(self, request, client_address) -> None:
        error = sys.exc_info()[1]
        if went_away(error):
            log.debug("%s: %s went away: %s", self.name, client_address[0], error)
        elif isinstance(error, TrivialCiError):
            log.warning("%s: a request from %s failed: %s", self.name, client_address[0], error)
        else:
            log.exception("%s: a request from %s failed", self.name, client_address[0])


def _cut(request) -> None:
    """Wake the connection's thread (its read ends) and the client (it sees the close)."""
    try:
        request.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass  # already gone


class OpenFile:
    """A regular file's descriptor as a value to send: its size now (a log may grow), then chunks of it."""

    def __init__(self, fd: int):
        self.fd, self.size = fd, os.fstat(fd).st_size

    def chunks(self, first: int = 0, last: int | None = None):
        return read_chunks(self.fd, first, self.size - 1 if last is None else min(last, self.size - 1))

    def close(self) -> None:
        os.close(self.fd)

    def __enter__(self) -> "OpenFile":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class GuardedHandler(BaseHTTPRequestHandler):
    """One connection of a GuardedServer: checks each request head, answers GET through answer_get()."""

    protocol_version = "HTTP/1.1"
    timeout = IO_TIMEOUT
    server: GuardedServer
    started_answer = False

    def answer_get(self) -> None:
        raise NotImplementedError

    def common_headers(self) -> dict:
        """The headers of every answer of this server."""
        return PLAIN_HEADERS

    def handle_one_request(self) -> None:
        self.started_answer = False
        try:
            super().handle_one_request()
        finally:
            self.server.awaiting(self.connection)

    def parse_request(self) -> bool:
        """The request line and headers, then the Host check and the body; False when refused (and closed)."""
        if not super().parse_request():
            return False
        refusal = self.server.hosts.refusal(self.headers.get_all("Host")) or self._drop_body()
        if refusal:
            self.refuse(*refusal)
            return False
        self.server.answering(self.connection)
        return True

    def _drop_body(self) -> tuple[int, str] | None:
        """None once the request's body, if any, is read and dropped; else why it cannot be."""
        if self.headers.get_all("Transfer-Encoding"):
            return 400, "this server takes no request body (Transfer-Encoding)"
        lengths = {value.strip() for value in self.headers.get_all("Content-Length") or []}
        if not lengths:
            return None
        if len(lengths) > 1 or not _LENGTH.match(next(iter(lengths))):
            return 400, "Content-Length is not one number"
        length = int(lengths.pop())
        if length > MAX_BODY:
            return 413, f"this server takes no request body over {MAX_BODY} bytes"
        if len(self.rfile.read(length)) < length:
            self.close_connection = True
        return None

    def do_GET(self) -> None:
        try:
            self.answer_get()
        except Exception as error:
            self.failed(error)

    def failed(self, error: Exception) -> None:
        """After an error while answering: 500 if nothing was sent yet, else close (the client sees a short body)."""
        if went_away(error):
            raise error
        self.server.handle_error(self.connection, self.client_address)
        if self.started_answer:
            self.close_connection = True
        else:
            self.send_bytes(500, "text/plain; charset=utf-8", f"{self.server.name} failed: {error}\n".encode())

    # --- answers --------------------------------------------------------

    def send_response(self, code, message=None) -> None:
        self.started_answer = True
        super().send_response(code, message)

    def start_answer(self, status: int, content_type: str, length: int, extra: dict | None = None) -> None:
        self.send_response(status)
        headers = {"Content-Type": content_type, "Content-Length": str(length), **self.common_headers(),
                   **(extra or {})}
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()

    def send_bytes(self, status: int, content_type: str, body: bytes, extra: dict | None = None) -> None:
        self.start_answer(status, content_type, len(body), extra)
        if self.command != "HEAD":
            self.wfile.write(body)

    def send_value(self, value, content_type: str, extra: dict | None = None) -> None:
        """A file (anything with `size` and chunks(first, last)): whole (200) or the Range asked for (206/416)."""
        extra = {"Accept-Ranges": "bytes", **(extra or {})}
        try:
            span = byte_range(self.headers.get("Range"), self.headers.get("If-Range"), value.size)
        except Unsatisfiable as unsatisfiable:
            return self.send_bytes(416, "text/plain; charset=utf-8", f"{unsatisfiable}\n".encode(),
                                   {**extra, "Content-Range": unsatisfiable.content_range()})
        first, last = (span.first, span.last) if span else (0, value.size - 1)
        self.start_answer(206 if span else 200, content_type, last - first + 1,
                          {**extra, "Content-Range": span.content_range()} if span else extra)
        if self.command != "HEAD":
            self.send_chunks(value.chunks(first, last), last - first + 1)

    def send_chunks(self, chunks, length: int) -> None:
        """Write `length` bytes from `chunks`; a source that ends short closes the connection (a short body)."""
        for chunk in chunks:
            self.wfile.write(chunk)
            length -= len(chunk)
        if length:
            self.close_connection = True

    def refuse(self, status: int, reason: str) -> None:
        """A one-line answer, then the connection is closed."""
        self.close_connection = True
        self.send_bytes(status, "text/plain; charset=utf-8", f"{reason}\n".encode(), {"Connection": "close"})

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """http.server's own refusals (a bad request line, an unknown method) as one line of text."""
        self.log_error("code %d, message %s", code, message)
        self.refuse(code, message or self.responses.get(code, ("refused",))[0])

    def log_message(self, format: str, *args) -> None:
        log.debug("%s: %s %s", self.server.name, self.address_string(), format % args)
