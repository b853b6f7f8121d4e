"""How a node learns that its inbox changed: inotify hints, or polling, chosen once at start.

Notifications are only a hint (see inbox.py: the rescan is the truth). On a
network or FUSE mount, where inotify cannot see other machines' writes, the
node polls and says why; where inotify cannot be had at all, it polls too. A
watcher whose observer thread died (watchdog's dies silently when a handler
raises) is replaced at the next chore; the rescan covers the gap.
"""

import logging
from collections import deque
from typing import Callable

from . import mounts

log = logging.getLogger("trivialci")

DEFAULT_POLL = 1.0


class InboxNotices:
    """The hints (name, closed) the watcher's thread queued, and how often to rescan."""

    def __init__(self, inbox, node: str, wake: Callable[[], None], poll: float | None, rescan: float):
        self.inbox, self.node, self.wake = inbox, node, wake
        self.poll, self.rescan = poll, rescan
        self.polling_reason: str | None = None
        self.hints: deque[tuple[str, bool]] = deque()
        self._watcher = None

    def start(self) -> None:
        """Watch with inotify unless the spool is on a mount that needs polling (or --poll says so)."""
        fs_type = mounts.filesystem_type(self.inbox)
        if self.poll is None and mounts.sees_other_machines(fs_type):
            self.poll = DEFAULT_POLL
            self.polling_reason = (f"the spool is on {fs_type}, where inotify cannot see other machines' "
                                   f"writes: polling every {self.poll:g} s")
        elif self.poll is not None:
            self.polling_reason = f"polling every {self.poll:g} s (--poll)"
        if self.polling_reason is None:
            self._start_watcher()
        else:
            log.info("%s: %s", self.node, self.polling_reason)

    def stop(self) -> None:
        if self._watcher:
            self._watcher.stop()
            self._watcher = None

    def rescan_interval(self) -> float:
        return self.poll if self._watcher is None else self.rescan

    def restart_if_dead(self) -> None:
        if self._watcher is not None and not self._watcher.alive():
            log.warning("%s: the inbox watcher died; restarting it (the rescan covered the gap)", self.node)
            self._watcher.stop()  # its emitter thread and inotify descriptor outlive a dead observer thread
            self._start_watcher()

    def _hint(self, name: str, closed: bool) -> None:
        """Called from the watcher's thread: queue the name and wake the node."""
        self.hints.append((name, closed))
        self.wake()

    def _start_watcher(self) -> None:
        try:
            from .watcher import InboxWatcher  # watchdog is loaded by a node that watches, and only then

            self._watcher = InboxWatcher(self.inbox, self._hint)
            self._watcher.start()
        except Exception as error:  # no inotify here (limits, kernel): polling still works
            self._watcher = None
            self.poll = self.poll or DEFAULT_POLL
            self.polling_reason = f"inotify is not available ({error}): polling every {self.poll:g} s"
            log.warning("%s: %s", self.node, self.polling_reason)
