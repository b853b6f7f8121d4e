"""Unsynced state: the hub writes state/ without fsync, and rebuilds it after a crash of the machine.

state/ is derived from the event log (done/, and the recorded changes still in
inbox/ and work/), and the event log is written durably (spool/atomic.py,
record.py). So a write of state/ needs no fsync of its own: every file is
still written whole and renamed into place, which every process of the
machine sees at once, and a kill -9 of the hub or of a script loses nothing
the kernel already holds. What a crash of the machine (power, kernel panic)
can lose is what the kernel had not yet written back; state/ is then rebuilt.

    state/.boot    {"boot": BOOT_ID, "since": TIME}: the writes of state/ since then were not synced;
                   they are whole only while the kernel of that boot runs

BOOT_ID is the kernel's /proc/sys/kernel/random/boot_id, new at every boot.
Before a process writes state/ unsynced, `prepare` reads .boot: the current
boot id there means nothing was lost since. Another boot id means the machine
restarted since unsynced writes (a crash, or a reboot): .built is removed (so
HubState.open rebuilds state/ from the event log) before .boot names the
current boot. No .boot means every write before was synced (a state from
before this file, or written elsewhere). .boot itself is written durably, so
no unsynced write is ever made while .boot names an older boot.

The fsyncs stay where a crash of this kernel is not the only risk: a state/ on
a network or FUSE filesystem (whose server can fail on its own), and a machine
without a boot id; there every write is synced as before.
"""

import os
import stat
import time
from pathlib import Path

from ..spool.atomic import remove_if_present, write_atomically
from ..spool.files import read_json
from ..spool.mounts import filesystem_type, sees_other_machines

MARK = ".boot"
BOOT_ID = Path("/proc/sys/kernel/random/boot_id")
_allowed: dict[str, bool] = {}  # state root -> whether this process may write it unsynced
_local_roots: dict[str, bool] = {}  # state root -> whether it is on a local filesystem (looked up once)


def prepare(root: Path, staging: Path) -> bool:
    """Make state/ at `root` ready for unsynced writes by this process; True when a crash of the machine
    since the last unsynced writes may have lost some (then .built is gone: the state is to be rebuilt)."""
    boot, key = boot_id(), str(root)
    mark = read_json(MARK, root=root) if _is_directory(root) else None  # read at every open: state/ may be gone
    if boot is not None and isinstance(mark, dict) and mark.get("boot") == boot and _local(root):
        _allowed[key] = True
        return False
    crashed = isinstance(mark, dict) and mark.get("boot") != boot
    if crashed:
        remove_if_present(".built", root=root)  # made durable with .boot below: one directory, one fsync
    if boot is None or not _local(root) or not _directory_made(root):
        if crashed:
            remove_if_present(MARK, root=root)  # the writes to come are synced
        _allowed[key] = False
        return crashed
    record = f'{{"boot": "{boot}", "since": "{time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}"}}\n'
    write_atomically(MARK, record.encode(), staging, root=root)  # synced, and state/ with it
    _allowed[key] = True
    return crashed


def allowed(root: Path) -> bool:
    """Whether this process may write state/ at `root` without fsync (after `prepare`)."""
    return _allowed.get(str(root), False)


def boot_id() -> str | None:
    """The running kernel's boot id; None where there is none (then every write is synced)."""
    if not _boot:
        try:
            value = BOOT_ID.read_text().strip()
        except OSError:
            value = ""
        _boot.append(value if value and len(value) <= 64 and value.replace("-", "").isalnum() else None)
    return _boot[0]


_boot: list = []  # the boot id, once read: it cannot change while a process lives


def _local(root: Path) -> bool:
    if str(root) not in _local_roots:
        kind = filesystem_type(root)
        _local_roots[str(root)] = kind != "unknown" and not sees_other_machines(kind)
    return _local_roots[str(root)]


def _is_directory(root: Path) -> bool:
    try:
        return stat.S_ISDIR(os.lstat(root).st_mode)
    except OSError:
        return False


def _directory_made(root: Path) -> bool:
    """Whether state/ is a directory now (made if missing; a link or file there stays, for rebuild to replace)."""
    if not os.path.lexists(root):
        try:
            os.makedirs(root, exist_ok=True)
        except OSError:
            return False
    return _is_directory(root)
