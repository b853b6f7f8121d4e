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
from .layout import NodeDir

HEARTBEAT_SECONDS = 5.0


def write_heartbeat(node_dir: NodeDir, info: dict) -> None:
    beat = {**info, "heartbeat": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    write_atomically(node_dir.heartbeat, (json.dumps(beat, indent=2) + "\n").encode(), node_dir.tmp, sync_dir=False)


def read_heartbeat(path: Path) -> dict | None:
    """The heartbeat at `path` with its age in seconds, or None when there is none."""
    try:
        beat = json.loads(Path(path).read_text())
        beat["age"] = round(time.time() - os.stat(path).st_mtime, 1)
        return beat
    except (OSError, ValueError, TypeError):
        return None


def remove_heartbeat(node_dir: NodeDir) -> None:
    remove_if_present(node_dir.heartbeat)
