"""Finding and stopping what a script started.

A script runs as the leader of its own process group, and every process it
starts inherits two marks in its environment: TRIVIALCI_EVENT_ID and
TRIVIALCI_NODE_DIR. Signalling the group reaches ordinary children; scanning
/proc for the marks also reaches children that left the group (setsid,
daemonized) and scripts left running by a node that was killed.

A pid read from a file is never signalled as it is: a process that is not our
own child is first proven to be ours (`open_marked`: it carries our mark, and
a pidfd taken before the check is still alive after it, so the pid was not
reused in between), and then signalled through that pidfd only.
"""

import os
import select
import signal
import time
from pathlib import Path

PROC = Path("/proc")


def marked_processes(event_id: str, node_dir: str) -> list[int]:
    """Pids of live processes that carry this event's marks in their environment."""
    wanted = {f"TRIVIALCI_EVENT_ID={event_id}".encode(), f"TRIVIALCI_NODE_DIR={node_dir}".encode()}
    found = []
    for pid in _all_pids():
        if pid != os.getpid() and wanted <= _environment(pid):
            found.append(pid)
    return found


def signal_all(pgid: int | None, event_id: str, node_dir: str, sig: int) -> int:
    """Send `sig` to the script's group and to every marked process; return how many were reached."""
    targets = set(marked_processes(event_id, node_dir))
    groups = {_group_of(pid) for pid in targets} | ({pgid} if pgid else set())
    groups.discard(os.getpgrp())
    groups.discard(None)
    for group in groups:
        _quietly(os.killpg, group, sig)
    for pid in targets:
        _quietly(os.kill, pid, sig)
    return len(targets | groups)


def anything_left(pgid: int | None, event_id: str, node_dir: str) -> bool:
    """Whether any process of the script's group or with its marks is still alive."""
    if pgid and group_alive(pgid):
        return True
    return bool(marked_processes(event_id, node_dir))


def carries(pid: int, mark: str) -> bool:
    """Whether the process has NAME=VALUE (`mark`) in its environment."""
    return mark.encode() in _environment(pid)


def open_marked(pid: int, mark: str) -> int | None:
    """A pidfd for `pid` if that process is alive and carries `mark`; None otherwise (or without pidfd support).

    The descriptor is opened before the environment is read and found alive
    after it: the pid cannot have passed to another process in between.
    """
    try:
        fd = os.pidfd_open(pid)
    except (AttributeError, OSError):
        return None
    if carries(pid, mark) and send_to(fd, 0):
        return fd
    os.close(fd)
    return None


def send_to(pidfd: int, sig: int) -> bool:
    """Send `sig` through a pidfd; whether the process was still there."""
    try:
        signal.pidfd_send_signal(pidfd, sig)
        return True
    except (ProcessLookupError, PermissionError):
        return False


def wait_for_exits(pidfds: list[int], deadline: float) -> list[int]:
    """Wait until the processes behind `pidfds` have exited or the monotonic `deadline` passed; those still alive."""
    waiting = list(pidfds)
    poller = select.poll()
    for fd in waiting:
        poller.register(fd, select.POLLIN)  # a pidfd is readable once its process has exited
    while waiting and time.monotonic() < deadline:
        for fd, _ in poller.poll(max(1, int((deadline - time.monotonic()) * 1000))):
            poller.unregister(fd)
            waiting.remove(fd)
    return waiting


def start_ticks(pid: int) -> int | None:
    """When a process started (clock ticks since boot): tells a pid from its reuse."""
    try:
        fields = (PROC / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()
        return int(fields[19])
    except (OSError, IndexError, ValueError):
        return None


def _all_pids():
    try:
        return [int(name) for name in os.listdir(PROC) if name.isdigit()]
    except OSError:
        return []


def _environment(pid: int) -> set[bytes]:
    try:
        with open(PROC / str(pid) / "environ", "rb") as handle:
            return set(handle.read().split(b"\0"))
    except OSError:
        return set()


def _group_of(pid: int):
    try:
        return os.getpgid(pid)
    except OSError:
        return None


def group_alive(pgid: int) -> bool:
    """Whether a process group has a member that is not a zombie."""
    try:
        os.killpg(pgid, 0)
        return not _only_zombies(pgid)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def _only_zombies(pgid: int) -> bool:
    """A group whose members are all zombies (waiting to be reaped) is finished."""
    for pid in _all_pids():
        try:
            fields = (PROC / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            return False
    return True


def _quietly(send, target: int, sig: int) -> None:
    try:
        send(target, sig)
    except (ProcessLookupError, PermissionError):
        pass


TERMINATE, KILL = signal.SIGTERM, signal.SIGKILL
