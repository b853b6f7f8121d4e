"""The node's one wait: a selector that wakes for a child's exit (its pidfd), a wake-up from another
thread (the inbox watcher, a signal handler) or the next deadline, whichever comes first."""

import os
import selectors


class Wakeup:
    def __init__(self):
        self.selector = selectors.DefaultSelector()
        self._read, self._write = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self.selector.register(self._read, selectors.EVENT_READ)

    def wait(self, seconds: float) -> None:
        for key, _ in self.selector.select(seconds):
            if key.fd == self._read:
                self._drain()

    def wake(self) -> None:
        """Safe from any thread and from a signal handler."""
        try:
            os.write(self._write, b"x")
        except BlockingIOError:
            pass  # a wake-up is pending already

    def close(self) -> None:
        self.selector.close()
        os.close(self._read)
        os.close(self._write)

    def _drain(self) -> None:
        try:
            while os.read(self._read, 4096):
                pass
        except BlockingIOError:
            pass
