"""The inbox as a node sees it: what waits there, in arrival order, and what is complete.

Arrival order is the order of the files' mtimes (a rename keeps the mtime of
the finished write), then of the names after their TYPE (the creation time, in
the names programs make: a worker's outbox delivers several events within one
tick of the filesystem's clock, in the order they were made), then names. An entry is complete, and may be claimed, as
soon as any of these holds:
  - it is not a regular file (it will be refused, so there is nothing to wait for);
  - inotify reported its writer closed it (close-write);
  - it already holds one whole JSON object (what emit's rename delivers);
  - its size and mtime held still for `settle` seconds (a writer that never
    finished: it is claimed and refused with the parse error). When inotify saw
    the file being made, the node waits for its close-write instead, and falls
    back to this only after LOST_CLOSE_PATIENCE seconds (the notification may
    have been dropped).
"""

import heapq
import json
import os
import stat
import time
from dataclasses import dataclass

from . import event

LOST_CLOSE_PATIENCE = 60.0


@dataclass
class Sighting:
    size: int
    mtime_ns: int
    since: float  # monotonic time size and mtime were first seen like this
    notified: bool = False  # inotify saw it: its close-write will come


class InboxTracker:
    def __init__(self, inbox, settle: float):
        self.inbox = inbox
        self.settle = settle
        self._unsettled: dict[str, Sighting] = {}
        self._ready: list[tuple[int, str, str]] = []
        self._ready_names: set[str] = set()

    def rescan(self) -> None:
        """Read the whole inbox: the truth that notifications only hint at."""
        present = {name for name in os.listdir(self.inbox) if event.is_candidate(name)}
        for name in (self._ready_names | self._unsettled.keys()) - present:
            self.forget(name)
        for name in present - self._ready_names:
            self.notice(name)

    def notice(self, name: str, closed: bool = False, notified: bool = False) -> None:
        """Look at one entry (new, or changed; `notified` by inotify) and queue it once it is complete."""
        if name in self._ready_names or not event.is_candidate(name):
            return
        try:
            info = os.lstat(os.path.join(self.inbox, name))
        except FileNotFoundError:
            self.forget(name)
            return
        complete = closed or not stat.S_ISREG(info.st_mode) or _holds_object(self.inbox, name)
        if complete or self._is_settled(name, info, notified):
            self._make_ready(name, info.st_mtime_ns)

    def recheck_unsettled(self) -> None:
        for name in list(self._unsettled):
            self.notice(name)

    def pop_ready(self) -> str | None:
        """The oldest complete entry not yet handed out, or None."""
        while self._ready:
            *_, name = heapq.heappop(self._ready)
            if name in self._ready_names:
                self._ready_names.discard(name)
                return name
        return None

    def forget(self, name: str) -> None:
        self._unsettled.pop(name, None)
        self._ready_names.discard(name)

    def has_ready(self) -> bool:
        return bool(self._ready_names)

    def has_unsettled(self) -> bool:
        return bool(self._unsettled)

    def __len__(self) -> int:
        return len(self._ready_names) + len(self._unsettled)

    def _is_settled(self, name: str, info: os.stat_result, notified: bool) -> bool:
        seen = self._unsettled.get(name)
        notified = notified or (seen is not None and seen.notified)
        if seen is None or (seen.size, seen.mtime_ns) != (info.st_size, info.st_mtime_ns):
            self._unsettled[name] = Sighting(info.st_size, info.st_mtime_ns, time.monotonic(), notified)
            return False
        seen.notified = notified
        patience = max(self.settle, LOST_CLOSE_PATIENCE) if notified else self.settle
        return time.monotonic() - seen.since >= patience

    def _make_ready(self, name: str, mtime_ns: int) -> None:
        self._unsettled.pop(name, None)
        self._ready_names.add(name)
        heapq.heappush(self._ready, (mtime_ns, name.partition(".")[2], name))


def _holds_object(directory, name: str) -> bool:
    """Whether the file already is one whole JSON object (a prefix of one never parses as one)."""
    try:
        fd = os.open(os.path.join(directory, name), os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        if os.fstat(fd).st_size > event.MAX_EVENT_BYTES:
            return True  # complete or not, it will be refused
        return isinstance(json.loads(os.read(fd, event.MAX_EVENT_BYTES + 1)), dict)
    except RecursionError:
        return True  # nested too deeply to read: complete or not, it will be refused
    except (OSError, ValueError):
        return False
    finally:
        os.close(fd)
