"""Forking a sibling: a copy of this process whose parent is our parent (clone(2) with CLONE_PARENT).

The fork server is the node's child; the scripts it forks this way are the
node's children too. So the node waits for them, reads their exit status from
the kernel and watches them on a pidfd exactly as it does a script it spawned,
and a fork server that dies takes no script and no exit status with it.

Python has no clone(); this calls the system call through ctypes, between the
interpreter's own before- and after-fork steps (the ones os.fork() runs: import
lock, thread states, os.register_at_fork hooks such as random's reseeding).
What glibc's fork() does besides, and a raw clone does not, matters only for
the child's record of its own thread id: it is set here as glibc sets it
(CLONE_CHILD_SETTID on the field found by `_tid_field`), or else left out, and
then only a lock of a rare kind (recursive, priority-inheriting) could be
confused, and only after the server's pid is reused by a thread of the child.
"""

import ctypes
import errno
import os
import platform
import signal
import struct
import threading

CLONE_PARENT = 0x00008000
CLONE_CHILD_CLEARTID = 0x00200000
CLONE_CHILD_SETTID = 0x01000000
# machine: (clone's system call number, where its child-tid argument goes among flags, stack, ptid, 4th, 5th)
SYSCALLS = {"x86_64": (56, 3), "aarch64": (220, 4)}
SCAN_BYTES = 4096  # how far into glibc's thread descriptor its thread id is looked for


class Unsupported(OSError):
    """This machine or C library cannot fork siblings: scripts are spawned instead."""


class Cloner:
    """Forks siblings of this single-threaded process."""

    def __init__(self):
        machine = platform.machine()
        if machine not in SYSCALLS or not hasattr(ctypes, "pythonapi"):
            raise Unsupported(errno.ENOSYS, f"forking siblings is not supported on {machine}")
        self.number, self.tid_argument = SYSCALLS[machine]
        self.libc = ctypes.PyDLL(None, use_errno=True)  # PyDLL: the GIL stays held across clone, as in os.fork
        self.libc.syscall.restype = ctypes.c_long
        for name in ("PyOS_BeforeFork", "PyOS_AfterFork_Parent", "PyOS_AfterFork_Child"):
            getattr(ctypes.pythonapi, name).restype = None
        self.tid_address = _tid_field(self.libc)

    def fork(self) -> int:
        """0 in the child, the child's pid in this process (the caller blocks signals around it, as glibc does)."""
        arguments = [CLONE_PARENT | signal.SIGCHLD, 0, 0, 0, 0]
        if self.tid_address:
            arguments[0] |= CLONE_CHILD_SETTID | CLONE_CHILD_CLEARTID
            arguments[self.tid_argument] = self.tid_address
        ctypes.pythonapi.PyOS_BeforeFork()
        pid = self.libc.syscall(ctypes.c_long(self.number), *(ctypes.c_ulong(a) for a in arguments))
        if pid == 0:
            ctypes.pythonapi.PyOS_AfterFork_Child()
            return 0
        error = ctypes.get_errno()
        ctypes.pythonapi.PyOS_AfterFork_Parent()
        if pid < 0:
            raise OSError(error, os.strerror(error))
        return pid


def _tid_field(libc) -> int | None:
    """The address of this thread's id in glibc's thread descriptor, or None if it cannot be told for sure.

    The offset is where the descriptors of this thread and of a second one both hold their own thread ids.
    """
    libc.pthread_self.restype = ctypes.c_void_p
    found = {}

    def offsets() -> set[int]:
        raw = ctypes.string_at(libc.pthread_self(), SCAN_BYTES)
        tid = threading.get_native_id()
        return {at for at in range(0, SCAN_BYTES, 4) if struct.unpack_from("=i", raw, at)[0] == tid}

    helper = threading.Thread(target=lambda: found.update(offsets=offsets()), name="tid-probe")
    helper.start()
    helper.join()
    common = offsets() & found.get("offsets", set())
    return libc.pthread_self() + common.pop() if len(common) == 1 else None
