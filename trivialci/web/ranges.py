"""Byte ranges of a GET (RFC 9110, section 14): the one grammar both servers read a Range header with.

    Range: bytes=FIRST-LAST    bytes FIRST..LAST (a LAST past the end: up to the end)
    Range: bytes=FIRST-        from FIRST to the end
    Range: bytes=-N            the last N bytes (all of them when there are fewer)

A satisfiable range is answered 206 with `Content-Range: bytes FIRST-LAST/SIZE`.
A range that starts at or past the end, or `bytes=-0`, is not satisfiable: 416
with `Content-Range: bytes */SIZE`. Everything else is ignored and the whole
file is sent (200), as RFC 9110 allows: another unit, a malformed or reversed
range (`bytes=5-2`), several ranges (a multipart answer is not worth its cost
here), and any Range sent with If-Range (these servers keep no validators, so
none can match). `bytes` is matched without regard to case; positions are
ASCII digits. An empty file has no range to send: `bytes=-N` (N > 0) gets the
whole, empty file, any other range 416.
"""

import re
from typing import NamedTuple

_SPEC = re.compile(r"bytes=([0-9]*)-([0-9]*)\Z", re.IGNORECASE | re.ASCII)
_PAST_ANY_END = 10 ** 18  # a position of more digits is past the end of any file (and int() has a digit limit)


class Span(NamedTuple):
    """Bytes first..last (inclusive) of a file of `size` bytes."""

    first: int
    last: int
    size: int

    @property
    def length(self) -> int:
        return self.last - self.first + 1

    def content_range(self) -> str:
        return f"bytes {self.first}-{self.last}/{self.size}"


class Unsatisfiable(Exception):
    """The range asks for bytes the file does not have: 416 with this Content-Range."""

    def __init__(self, size: int):
        super().__init__(f"the file has {size} bytes")
        self.size = size

    def content_range(self) -> str:
        return f"bytes */{self.size}"


def byte_range(range_header: str | None, if_range: str | None, size: int) -> Span | None:
    """The Span to send (206), or None for the whole file (200); Unsatisfiable for a 416."""
    spec = _SPEC.match(range_header.strip()) if range_header is not None and if_range is None else None
    if spec is None or spec[1] == spec[2] == "":
        return None
    if spec[1] == "":
        return _suffix(_position(spec[2]), size)
    first, last = _position(spec[1]), _position(spec[2]) if spec[2] else size - 1
    if last < first and spec[2]:
        return None  # an invalid range-spec: ignored
    if first >= size:
        raise Unsatisfiable(size)
    return Span(first, min(last, size - 1), size)


def _suffix(count: int, size: int) -> Span | None:
    if count == 0:
        raise Unsatisfiable(size)
    return Span(max(0, size - count), size - 1, size) if size else None


def _position(digits: str) -> int:
    return int(digits) if len(digits) <= 18 else _PAST_ANY_END
