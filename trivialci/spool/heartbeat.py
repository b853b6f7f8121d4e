"""The heartbeat file: who runs a node, and that it is alive.

NODE_DIR/hub.json or NODE_DIR/worker.json, rewritten atomically every
HEARTBEAT_SECONDS: {node, kind, worker, log_url, host, pid, started, heartbeat,
polling, jobs, running, blocked, pipeline}. Its "heartbeat" time (and the file's mtime)
says when the node last lived; it is removed when the node stops cleanly.
"""

import json
import os
import time
from pathlib import Path

from .atomic import remove_if_present, write_atomically
from .files import MAX_STATE_BYTES, open_regular, read_limited
from .layout import NodeDir

HEARTBEAT_SECONDS = 5.0


def write_heartbeat(node_dir: NodeDir, info: dict) -> None:
    beat = {**info, "heartbeat": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    write_atomically(node_dir.heartbeat, (json.dumps(beat, indent=2) + "\n").encode(), node_dir.tmp, sync_dir=False)


def read_heartbeat(where: NodeDir | Path) -> dict | None:
    """The heartbeat of a node (or at a path) with its age in seconds, or None when there is none.

    Anyone who can write the spool can put a link or a FIFO where a heartbeat is:
    neither is followed or waited on (spool/files.py), and of a node directory
    the worker's path is walked from SPOOL/workers without following a link.
    """
    try:
        with os.fdopen(_open_heartbeat(where), "rb") as handle:
            mtime = os.fstat(handle.fileno()).st_mtime
            beat = json.loads(read_limited(handle, MAX_STATE_BYTES, where))
        beat["age"] = round(time.time() - mtime, 1)
        return beat
    except (OSError, ValueError, TypeError, RecursionError):
        return None


def _open_heartbeat(where: NodeDir | Path) -> int:
    if not isinstance(where, NodeDir):
        return open_regular(where)
    if where.is_hub:
        return open_regular(where.heartbeat)
    return open_regular(f"{where.node}/{where.heartbeat.name}", root=where.spool / "workers")


def remove_heartbeat(node_dir: NodeDir) -> None:
    remove_if_present(node_dir.heartbeat)
