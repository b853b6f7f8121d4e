"""The outbox: what a worker sends the hub waits on the worker's own disk until the hub's inbox has it.

A worker's spool is usually a mount of another machine's disk, and mounts go
away (a partition, the server rebooting). A worker's scripts must not stall or
lose a report then, so what they send the hub goes here first, and the
worker's forwarder moves it on, one event at a time, oldest first:

    WORKDIR/outbox/SEQ.NAME          waiting (SEQ: nanoseconds, so the outbox sorts by sending time)
    WORKDIR/outbox/staged/SEQ.NAME   its copy is in SPOOL/workers/W/sending/NAME
    SPOOL/workers/W/sending/NAME     --rename-->  SPOOL/inbox/NAME, the hub's

Every step can be repeated, so an event survives a crash or a partition at
any point and reaches the hub's inbox exactly once:
  waiting  (re)write sending/NAME, then move the local entry to staged/;
  staged   while sending/NAME exists it has not been renamed yet: rename it;
           once it is gone (renamed now, or before a crash), drop the entry.
Nothing but this worker's forwarder touches its sending/ directory.
"""

import logging
import os
import re
import threading
import time
from pathlib import Path

from . import event
from .atomic import fsync_dir, remove_if_present, write_atomically, write_synced
from .faults import crash_point
from .layout import OUTBOX_ENV, NodeDir, hub_dir  # noqa: F401 (OUTBOX_ENV names a worker's outbox, for its users)

log = logging.getLogger("trivialci")

ENTRY = re.compile(r"\d{20}\.(.+\.json)\Z")
RETRY_SECONDS = 1.0


def put(outbox: Path, event_type: str, payload: dict) -> Path:
    """Keep an event for the hub in the outbox (atomically, on local disk); the entry's path."""
    body = event.encode(payload)
    name = f"{time.time_ns():020d}.{event.unique_name(event_type)}"
    (Path(outbox) / "tmp").mkdir(parents=True, exist_ok=True)
    return write_atomically(Path(outbox) / name, body, Path(outbox) / "tmp")


def waiting(outbox: Path) -> list[str]:
    """The entries not yet in the hub's inbox, in sending order (a staged one first)."""
    return _entries(Path(outbox) / "staged") + _entries(Path(outbox))


class Forwarder:
    """Moves one worker's outbox into the hub's inbox, oldest first, each event exactly once."""

    def __init__(self, outbox: Path, worker: NodeDir):
        self.outbox = Path(outbox)
        self.staged = self.outbox / "staged"
        self.sending = worker.root / "sending"
        self.inbox = hub_dir(worker.spool).inbox

    def create(self) -> None:
        for directory in (self.outbox / "tmp", self.staged):
            directory.mkdir(parents=True, exist_ok=True)

    def flush(self) -> int:
        """Deliver everything waiting, in order; how many were delivered. OSError: the spool is out of reach."""
        delivered = 0
        for name in _entries(self.staged):
            self._rename_staged(name)
            delivered += 1
        for name in _entries(self.outbox):
            self._stage(name)
            self._rename_staged(name)
            delivered += 1
        return delivered

    def _stage(self, entry: str) -> None:
        copy = self.sending / _event_name(entry)
        self.sending.mkdir(exist_ok=True)
        remove_if_present(copy)  # a copy a crash left half-written
        write_synced(copy, (self.outbox / entry).read_bytes())
        os.rename(self.outbox / entry, self.staged / entry)
        crash_point("outbox-staged")

    def _rename_staged(self, entry: str) -> None:
        name = _event_name(entry)
        try:
            os.rename(self.sending / name, self.inbox / name)
        except FileNotFoundError:
            if not self.inbox.is_dir():
                raise
            # the copy is gone: it was renamed already (a reply lost in a partition, or a crash)
        crash_point("outbox-delivered")
        fsync_dir(self.inbox)
        os.unlink(self.staged / entry)


class ForwarderThread:
    """Runs a Forwarder beside the node loop: woken when a script adds an entry, retrying while the spool is away.

    It has a thread of its own because a call into a network mount that is gone
    blocks until the mount gives up; the node's loop and its scripts go on meanwhile.
    """

    def __init__(self, forwarder: Forwarder, node_name: str):
        self.forwarder = forwarder
        self.node_name = node_name
        self.trouble: str | None = None
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"outbox-{node_name}", daemon=True)
        self._watcher = None

    def start(self) -> "ForwarderThread":
        """Start watching and delivering; the outbox's directories exist already (Forwarder.create)."""
        self._watch()
        self._thread.start()
        return self

    def wake(self) -> None:
        self._wake.set()

    def stop(self, patience: float = 5.0) -> None:
        """Deliver what waits if that is quick, then stop; what is left goes at the next start."""
        self._stopping.set()
        self._wake.set()
        if self._thread.ident is not None:  # it was started
            self._thread.join(patience)
        if self._watcher is not None:
            self._watcher.stop()
        left = len(waiting(self.forwarder.outbox))
        if left:
            log.warning("%s: %d event(s) for the hub wait in %s; the worker's next start delivers them",
                        self.node_name, left, self.forwarder.outbox)

    def _run(self) -> None:
        while True:
            self._wake.clear()
            self._flush_once()
            if self._stopping.is_set():
                return
            self._wake.wait(RETRY_SECONDS)

    def _flush_once(self) -> None:
        try:
            self.forwarder.flush()
        except OSError as error:
            self._note_trouble(f"cannot deliver to the hub's inbox {self.forwarder.inbox}: {error.strerror or error}")
            return
        except Exception:  # a bug must not stop delivery for good: log it, retry later
            log.exception("%s: the outbox forwarder failed; retrying", self.node_name)
            return
        if self.trouble is not None:
            log.warning("%s: the hub's inbox is reachable again; the outbox is delivered", self.node_name)
            self.trouble = None

    def _note_trouble(self, trouble: str) -> None:
        if self.trouble is None:
            log.error("%s: %s; keeping %d event(s) in %s and retrying every %g s", self.node_name, trouble,
                      len(waiting(self.forwarder.outbox)), self.forwarder.outbox, RETRY_SECONDS)
        self.trouble = trouble

    def _watch(self) -> None:
        """inotify on the local outbox wakes the thread at once; the periodic retry covers its absence."""
        try:
            from .watcher import InboxWatcher

            self._watcher = InboxWatcher(self.forwarder.outbox, lambda name, complete: self.wake())
            self._watcher.start()
        except Exception as error:
            self._watcher = None
            log.warning("%s: cannot watch %s (%s): delivering every %g s", self.node_name, self.forwarder.outbox,
                        error, RETRY_SECONDS)


def _entries(directory: Path) -> list[str]:
    try:
        return sorted(name for name in os.listdir(directory) if ENTRY.match(name))
    except (FileNotFoundError, NotADirectoryError):
        return []


def _event_name(entry: str) -> str:
    return ENTRY.match(entry).group(1)


