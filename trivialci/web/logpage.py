"""A job's log as pages of numbered, coloured lines: from the store once stored, from the worker while it runs.

A page is at most PAGE_BYTES of the log, from a byte offset that starts a
line, cut after its last newline (a line longer than a page is cut), so the
next page starts where this one ended. Nothing reads more than one page into
memory: a 50 MiB log is read a page at a time; only a page asked for by its
end (`from=last`) counts the newlines before it, a chunk at a time, to number
its lines. A page link carries its first line's number, so that the pages
after it count nothing.

While the job runs, the page comes from the worker's log server (the job's
"log_url", as the worker advertised it), asked for with a Range of one page:
the hub's UI fetches it so that the browser talks to one server only (its
Content-Security-Policy allows fetches to 'self' and nothing else). Only a
URL whose path is /logs/JOB of this very job is asked, with a short timeout.
"""

import http.client
import re
from typing import NamedTuple
from urllib.parse import urlsplit

from . import ansi

PAGE_BYTES = 64 << 10  # about 800 lines of a test runner's output
LIVE_TIMEOUT = 5.0  # seconds the UI waits for a worker's log server
MAX_LINE = 1 << 30


class LogPage(NamedTuple):
    """Lines [(number, runs)] of the bytes first..next-1 of a log of `size` bytes so far."""

    lines: list
    first: int
    next: int
    size: int
    complete: bool  # the log will not grow (stored, or its job ended)

    @property
    def more(self) -> bool:
        return self.next < self.size

    @property
    def next_line(self) -> int:
        return (self.lines[-1][0] + 1) if self.lines else 1


def page_of(data: bytes, first: int, line: int, size: int, complete: bool) -> LogPage:
    """The whole lines of `data` (read from offset `first`); all of it when it reaches the end of a complete log."""
    at_end = complete and first + len(data) >= size
    cut = len(data) if at_end or len(data) >= PAGE_BYTES and b"\n" not in data else data.rfind(b"\n") + 1
    text = data[:cut].decode("utf-8", "replace")
    style, lines = ansi.Style(), []
    for number, content in enumerate(text.splitlines(), start=line):
        lines.append((number, ansi.runs(content, style)))
    return LogPage(lines, first, first + cut, size, complete)


def stored_page(open_value, first: int, line: int | None) -> LogPage | None:
    """A page of a stored log; `open_value()` opens it (each value is read once), None when it is not there."""
    value = open_value()
    if value is None:
        return None
    with value:
        size = value.size
        if first < 0:  # the last page
            first = _last_page_start(open_value, size)
        data = b"".join(value.chunks(first, first + PAGE_BYTES - 1)) if first < size else b""
    if line is None:
        line = 1 + _count_lines(open_value, first)
    return page_of(data, first, line, size, True)


def _last_page_start(open_value, size: int) -> int:
    """Where the last page starts: PAGE_BYTES before the end, moved past the newline that ends a line there."""
    start = max(0, size - PAGE_BYTES)
    if start == 0:
        return 0
    value = open_value()
    with value:
        head = b"".join(value.chunks(start, min(size - 1, start + PAGE_BYTES - 1)))
    newline = head.find(b"\n")
    return start + newline + 1 if newline >= 0 else start


def _count_lines(open_value, upto: int) -> int:
    """The newlines in the first `upto` bytes, read a chunk at a time."""
    if upto <= 0:
        return 0
    value = open_value()
    with value:
        return sum(chunk.count(b"\n") for chunk in value.chunks(0, upto - 1))


def live_page(log_url: str, job_id: str, first: int, line: int) -> LogPage | None:
    """A page of a running job's log from its worker's log server; None when the server cannot be asked."""
    parts = urlsplit(log_url)
    if parts.scheme != "http" or parts.path.rstrip("/").rsplit("/", 2)[-2:] != ["logs", job_id] or not parts.hostname:
        return None
    connection = http.client.HTTPConnection(parts.hostname, parts.port or 80, timeout=LIVE_TIMEOUT)
    try:
        connection.request("GET", f"/logs/{job_id}", headers={"Range": f"bytes={first}-{first + PAGE_BYTES - 1}"})
        answer = connection.getresponse()
        data = answer.read(PAGE_BYTES) if answer.status in (200, 206) else b""
        complete = answer.getheader("X-Log-Complete") == "1"
        size = _size(answer.getheader("Content-Range"), first + len(data))
    except (OSError, http.client.HTTPException):
        return None
    finally:
        connection.close()
    if answer.status not in (200, 206, 416):
        return None
    return page_of(data if answer.status == 206 or first == 0 else b"", first, line, size, complete)


def _size(content_range: str | None, fallback: int) -> int:
    found = re.search(r"/(\d{1,18})\Z", content_range or "")
    return int(found.group(1)) if found else fallback


def parse_position(query: dict) -> tuple[int, int | None]:
    """?from=N (a byte offset, or `last`) and ?line=K of a page link; (0, 1) by default, -1 for the last page."""
    given, line = (query.get("from") or ["0"])[0], (query.get("line") or [""])[0]
    if given == "last":
        return -1, None
    first = int(given) if given.isdigit() and len(given) <= 18 else 0
    if first == 0:
        return 0, 1
    return first, int(line) if line.isdigit() and len(line) <= 10 and 0 < int(line) < MAX_LINE else None
