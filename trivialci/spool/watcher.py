"""Wake-up hints from inotify, through watchdog.

This is the only module that imports watchdog. The hints only make a node
react at once; the node's rescan of its inbox is the truth. inotify drops
events when its queue overflows and a watchdog observer thread dies silently
when a handler raises, so the handler here never raises and the node checks
`alive()` on every rescan and restarts a dead watcher.
"""

import importlib
import logging
import os
from typing import Callable

from watchdog.events import (DirCreatedEvent, DirMovedEvent, FileClosedEvent, FileCreatedEvent, FileMovedEvent,
                             FileSystemEventHandler, FileSystemMovedEvent)
from watchdog.observers.inotify import InotifyObserver

log = logging.getLogger("trivialci")


def _not_a_stop_race(record: logging.LogRecord) -> bool:
    """watchdog logs an error when it is stopped while reading; that is a normal stop here."""
    return "called when the thread is inactive" not in record.getMessage()


logging.getLogger("watchdog.observers.inotify").addFilter(_not_a_stop_race)


def _deliver_moves_at_once() -> None:
    """Stop watchdog from holding every event behind a move out of the inbox for 0.5 s.

    watchdog delays each IN_MOVED_FROM, hoping to pair it with an IN_MOVED_TO,
    and nothing queued after it is delivered meanwhile. Every claim moves a
    file out of the inbox, so the next drop would wait half a second. The node
    never needs moves paired (an unpaired IN_MOVED_TO is still a "created").
    """
    for module, holder in (("watchdog.observers.inotify_move_event_grouper", "InotifyMoveEventGrouper"),
                           ("watchdog.observers.inotify_buffer", "InotifyBuffer")):
        try:
            setattr(getattr(importlib.import_module(module), holder), "delay", 0.0)
        except (ImportError, AttributeError):
            pass  # another watchdog version: its own delay applies, the rescan still holds


_deliver_moves_at_once()
WATCHED = [FileCreatedEvent, FileMovedEvent, FileClosedEvent, DirCreatedEvent, DirMovedEvent]


class InboxWatcher:
    """Calls `hint(name, complete)` for entries that appear in a directory.

    `complete` is True when the entry was closed after writing or renamed in:
    no writer holds it any more.
    """

    def __init__(self, directory, hint: Callable[[str, bool], None]):
        self.directory = os.path.abspath(directory)
        self._handler = _HintHandler(self.directory, hint)
        self._observer = None

    def start(self) -> None:
        # Full events: a file renamed in from elsewhere (an atomic delivery) is reported
        # as a move, so it is known complete; a plain "created" still has a writer.
        self._observer = InotifyObserver(generate_full_events=True)
        self._observer.daemon = True
        self._observer.schedule(self._handler, self.directory, recursive=False, event_filter=WATCHED)
        self._observer.start()

    def alive(self) -> bool:
        return self._observer is not None and self._observer.is_alive()

    def stop(self) -> None:
        if self._observer is not None:
            self._observer.stop()
            if self._observer.is_alive():
                self._observer.join(timeout=5)
            self._observer = None


class _HintHandler(FileSystemEventHandler):
    def __init__(self, directory: str, hint):
        self.directory = directory
        self.hint = hint

    def on_any_event(self, event) -> None:
        try:
            path = event.dest_path if isinstance(event, FileSystemMovedEvent) else event.src_path
            path = os.fsdecode(path)
            if os.path.dirname(path) == self.directory:
                self.hint(os.path.basename(path), not isinstance(event, FileCreatedEvent))
        except Exception:  # a raising handler would kill the observer thread
            log.exception("inbox watcher: ignoring a notification it could not handle")
