"""One process per node directory.

A node holds NODE_DIR/node.lock, created with O_CREAT|O_EXCL (which NFS and
sshfs carry; flock does not cross sshfs) and holding {host, pid, started,
start_ticks}. The holder touches it with every heartbeat. A second process
refuses to start and names the holder. A lock is stale, and is taken over, when
its holder is on this host and dead (or its pid was reused), or on another host
and has not touched the lock for STALE_AFTER seconds.
"""

import json
import os
import socket
import time
from pathlib import Path

from . import processes
from ..errors import NodeBusy, SpoolUnavailable

STALE_AFTER = 60.0
HOST = socket.gethostname()


class NodeLock:
    def __init__(self, path: Path):
        self.path = Path(path)
        self.mine = {"host": HOST, "pid": os.getpid(), "start_ticks": processes.start_ticks(os.getpid())}

    def acquire(self) -> None:
        """Hold the lock, or raise NodeBusy naming the live holder."""
        for _ in range(5):
            if self._create():
                return
            holder = self._read_holder()
            if self._holder_alive(holder):
                raise NodeBusy(_busy_message(self.path.parent, holder))
            self._remove_stale()
        raise NodeBusy(f"could not take over the stale lock {self.path}: remove it by hand if no node runs there")

    def touch(self) -> None:
        os.utime(self.path)

    def release(self) -> None:
        holder = self._read_holder()
        if all(holder.get(key) == value for key, value in self.mine.items()):
            os.unlink(self.path)

    def _create(self) -> bool:
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        except FileExistsError:
            return False
        try:
            self._write_holder(fd)
        except OSError as error:
            os.unlink(self.path)  # an empty lock would look held by someone for STALE_AFTER seconds
            raise SpoolUnavailable(f"cannot write the lock {self.path}: {error.strerror or error} "
                                   "(is the spool's filesystem full or read-only?)") from None
        return True

    def _write_holder(self, fd: int) -> None:
        with os.fdopen(fd, "w") as handle:
            json.dump({**self.mine, "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}, handle)
            handle.flush()
            os.fsync(handle.fileno())

    def _read_holder(self) -> dict:
        try:
            holder = json.loads(self.path.read_text() or "{}")
            return holder if isinstance(holder, dict) else {}
        except FileNotFoundError:
            return {}
        except ValueError:
            return {}

    def _holder_alive(self, holder: dict) -> bool:
        if not holder.get("pid"):
            return self._age() < STALE_AFTER  # being written right now, or garbage: let it age
        if holder.get("host") != HOST:
            return self._age() < STALE_AFTER
        ticks = processes.start_ticks(holder["pid"])
        if ticks is None:
            return _pid_exists(holder["pid"])  # no /proc to tell a reused pid: assume it is the holder
        return ticks == holder.get("start_ticks") or holder.get("start_ticks") is None

    def _age(self) -> float:
        try:
            return time.time() - self.path.stat().st_mtime
        except FileNotFoundError:
            return STALE_AFTER

    def _remove_stale(self) -> None:
        """Rename the stale lock aside first: of two processes taking over, one wins."""
        aside = self.path.with_name(f".{self.path.name}.stale.{os.urandom(4).hex()}")
        try:
            os.rename(self.path, aside)
            os.unlink(aside)
        except FileNotFoundError:
            pass


def _pid_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _busy_message(node_dir: Path, holder: dict) -> str:
    if not holder.get("pid"):
        return (f"{node_dir} has a lock that is empty or unreadable ({node_dir}/node.lock): a node is starting "
                f"there right now, or one crashed while starting; it is taken over {STALE_AFTER:g} s after its "
                "last change, or remove it by hand if no node runs there")
    who = f"pid {holder.get('pid', '?')} on {holder.get('host', '?')}"
    since = f" since {holder['started']}" if holder.get("started") else ""
    return (f"{node_dir} is already run by {who}{since}: stop that process first, "
            "or give this one another --spool or --name")
