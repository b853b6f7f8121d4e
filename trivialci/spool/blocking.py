"""A node that cannot read or record holds still, says why once, and tries again with backoff.

    running --I/O error--> blocked(reason) --retry every 1, 2, 4 .. MAX s--> running

While blocked a node claims nothing new and keeps what it holds in work/
(DESIGN: "Full disk"). A retry that changes nothing pushes the next one
further out, up to MAX_RETRY_SECONDS, so a node whose spool went away waits
near idle instead of spinning; the first success resumes it at once.
"""

import time

RETRY_SECONDS = 1.0
MAX_RETRY_SECONDS = 8.0


class Blocking:
    """Why the node is blocked (None: it is not), and when it next tries."""

    def __init__(self):
        self.reason: str | None = None
        self.retry_at = 0.0
        self._backoff = RETRY_SECONDS

    def block(self, reason: str) -> bool:
        """Note the trouble; True when the node was not blocked before (say so then)."""
        first = self.reason is None
        if first:
            self._backoff = RETRY_SECONDS
        self.reason = reason
        self.retry_at = time.monotonic() + self._backoff
        return first

    def unblock(self) -> bool:
        """The trouble is over; True when the node was blocked (say so then)."""
        was_blocked = self.reason is not None
        self.reason, self._backoff = None, RETRY_SECONDS
        return was_blocked

    def retry_due(self) -> bool:
        return self.reason is None or time.monotonic() >= self.retry_at

    def back_off(self) -> None:
        """A retry came and went and the node is still blocked: wait twice as long for the next one."""
        if self.reason is not None and time.monotonic() >= self.retry_at:
            self._backoff = min(self._backoff * 2, MAX_RETRY_SECONDS)
            self.retry_at = time.monotonic() + self._backoff
