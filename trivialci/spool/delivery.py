"""Delivery: how an event reaches a node's inbox.

A writer stages the body in the target node's tmp/ (same filesystem as its
inbox), fsyncs it, renames it into inbox/ under a unique name and fsyncs the
inbox. Readers therefore never see half an event, and once emit() returns the
event survives a crash of this machine.
"""

import logging
import os
import time
from pathlib import Path

from . import event
from .atomic import write_atomically
from ..errors import BadInput, SpoolUnavailable
from .layout import OUTBOX_ENV, NodeDir, hub_dir, worker_dir
from .permissions import make_dirs

log = logging.getLogger("trivialci")

SPOOL_ENV = "TRIVIALCI_SPOOL"
TMP_MAX_AGE = 86400.0  # a file staged in tmp/ for longer than this belongs to a writer that died


def emit(event_type: str, payload: dict, to: str = "hub", spool=None) -> Path:
    """Deliver `payload` as an event of `event_type` to a node; return the inbox path.

    `to` is "hub", "worker:NAME", or the path of a node directory. `spool`
    defaults to $TRIVIALCI_SPOOL, which every script run by a node has.
    """
    if to == "hub" and _goes_through_outbox(spool):
        from . import outbox  # only a worker's scripts need it: every other emit skips its imports

        return outbox.put(Path(os.environ[OUTBOX_ENV]), event_type, payload)
    body = event.encode(payload)
    name = event.unique_name(event_type)
    root = resolve_target(to, spool)
    try:
        return write_atomically(root / "inbox" / name, body, root / "tmp")
    except OSError as error:
        raise SpoolUnavailable(f"could not deliver {name} to {root}/inbox: {error.strerror or error}") from None


def _goes_through_outbox(spool) -> bool:
    """A worker's script sending to its own hub: yes. Anything else goes straight to the inbox."""
    if not os.environ.get(OUTBOX_ENV):
        return False
    own = os.environ.get(SPOOL_ENV)
    return spool is None or (own is not None and os.path.abspath(spool) == os.path.abspath(own))


def resolve_target(to: str, spool=None) -> Path:
    """The node directory that `to` names; created for the hub, required for others."""
    if to == "hub":
        return _ensure_hub(_spool_or_env(spool))
    if to.startswith("worker:"):
        root = worker_dir(_spool_or_env(spool), to[len("worker:"):]).root
    else:
        root = Path(os.path.abspath(to))
    if not (root / "inbox").is_dir() or not (root / "tmp").is_dir():
        raise BadInput(f"{root} is not a node directory (it needs inbox/ and tmp/): is the worker's name right?")
    return root


def _spool_or_env(spool) -> Path:
    spool = spool or os.environ.get(SPOOL_ENV)
    if not spool:
        raise BadInput(f"no spool given: pass --spool DIR or set {SPOOL_ENV}")
    return Path(spool)


def _ensure_hub(spool: Path) -> Path:
    """The hub's directory; its inbox/ and tmp/ are made if missing, so an event can wait for a hub."""
    node = hub_dir(spool)
    try:
        make_dirs(node.inbox)
        make_dirs(node.tmp)
    except OSError as error:
        raise SpoolUnavailable(f"cannot use spool {spool}: {error.strerror or error}") from None
    return node.root


def reap_tmp(node_dir: NodeDir, max_age: float = TMP_MAX_AGE) -> int:
    """Remove files in tmp/ older than `max_age`: writers that died mid-delivery."""
    removed = 0
    cutoff = time.time() - max_age
    for entry in os.scandir(node_dir.tmp):
        try:
            if entry.is_file(follow_symlinks=False) and entry.stat(follow_symlinks=False).st_mtime < cutoff:
                os.unlink(entry.path)
                removed += 1
        except OSError:
            pass
    if removed:
        log.info("%s: removed %d stale file(s) from tmp/", node_dir.node, removed)
    return removed
