"""The spool tree: where a node's directories are.

    SPOOL/                    the hub's node directory
      inbox/ tmp/ work/ done/DAY/ failed/DAY/ state/
      hub.json                the hub's heartbeat
      workers/NAME/           a worker's node directory, same shape
        worker.json           the worker's heartbeat

Every node directory has the same shape; `state/` belongs to the hub and its
scripts. Days are UTC days, `YYYY-MM-DD`. A worker keeps the logs of the
scripts it runs on its own disk while they run (`running_logs`), so that a
script can always write its output, spool or no spool; a log joins its event
in done/ or failed/ when that is recorded.
"""

import os
import re
from dataclasses import dataclass
from pathlib import Path

from ..errors import BadInput
from .permissions import make_dirs

HUB = "hub"
OUTBOX_ENV = "TRIVIALCI_OUTBOX"  # names a worker's outbox in its scripts' environment (see outbox.py)
NODE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,62}\Z")
SUBDIRS = ("inbox", "tmp", "work", "done", "failed")


@dataclass(frozen=True)
class NodeDir:
    """One node's directory inside the spool: its inbox and its records."""

    spool: Path
    node: str
    running_logs: Path | None = None  # where running scripts write their logs, when not in work/

    @property
    def root(self) -> Path:
        return self.spool if self.node == HUB else self.spool / "workers" / self.node

    @property
    def is_hub(self) -> bool:
        return self.node == HUB

    inbox = property(lambda self: self.root / "inbox")
    tmp = property(lambda self: self.root / "tmp")
    work = property(lambda self: self.root / "work")
    done = property(lambda self: self.root / "done")
    failed = property(lambda self: self.root / "failed")
    state = property(lambda self: self.root / "state")
    lock = property(lambda self: self.root / "node.lock")
    logs = property(lambda self: self.running_logs or self.work)

    @property
    def heartbeat(self) -> Path:
        return self.root / ("hub.json" if self.is_hub else "worker.json")

    def create(self) -> None:
        """Make the directories a node needs (like mkdir -p; private, or shared under a setgid spool)."""
        for name in SUBDIRS + (("state", "workers") if self.is_hub else ()):
            make_dirs(self.root / name)


def hub_dir(spool) -> NodeDir:
    return NodeDir(Path(os.path.abspath(spool)), HUB)


def worker_dir(spool, name: str) -> NodeDir:
    check_node_name(name)
    return NodeDir(Path(os.path.abspath(spool)), name)


def check_node_name(name: str) -> str:
    """A worker's name: it names SPOOL/workers/NAME/, its log and its workdir, so it is one plain file name."""
    if not isinstance(name, str) or not NODE_NAME.match(name) or name == HUB:
        shown = repr(name) if len(repr(name)) <= 80 else repr(name)[:80] + "..."
        raise BadInput(
            f"bad worker name {shown}: use 1-63 ASCII letters, digits, '_' or '-', "
            f"starting with a letter or digit (and not {HUB!r})"
        )
    return name


def under(root, *names: str) -> Path:
    """ROOT/NAME/...: each name must be one file name (no '/', not '.' or '..'), so the path stays under ROOT.

    Names from events pass their own grammar first; this is the proof that
    what is built from them cannot leave the directory it is meant for.
    """
    path = Path(root)
    for name in names:
        if not isinstance(name, str) or name in ("", ".", "..") or "/" in name or "\0" in name:
            raise BadInput(f"{name!r} is not a file name: a path made with it would leave {path}")
        path = path / name
    return path


def worker_names(spool) -> list[str]:
    """Names of the worker directories present in the spool, sorted."""
    try:
        entries = os.listdir(Path(spool) / "workers")
    except FileNotFoundError:
        return []
    return sorted(n for n in entries if NODE_NAME.match(n) and n != HUB)
