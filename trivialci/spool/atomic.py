"""Atomic writes: stage in tmp/, fsync, rename into place, fsync the directory.

Every file another process may read is written this way, so a reader sees the
whole file or none of it. A failed write or fsync removes the staged file and
raises: it is never retried as if it had succeeded.
"""

import os
from pathlib import Path

from .permissions import PRIVATE_FILE, file_mode


def write_atomically(path: Path, data: bytes, tmp_dir: Path, *, sync_dir: bool = True) -> Path:
    """Write `data` to `path` through `tmp_dir` (same filesystem); return `path`."""
    staged = Path(tmp_dir) / f".{Path(path).name}.{os.getpid()}.{os.urandom(4).hex()}.tmp"
    try:
        write_synced(staged, data)
        os.rename(staged, path)
    except BaseException:
        _remove_quietly(staged)
        raise
    if sync_dir:
        fsync_dir(Path(path).parent)
    return Path(path)


def write_synced(path: Path, data: bytes) -> None:
    """Create `path` with `data`, flushed to disk before this returns; 0600, or 0640 in a shared directory."""
    mode = file_mode(Path(path).parent)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
    try:
        if mode != PRIVATE_FILE:
            os.fchmod(fd, mode)  # the group reads it even if the writer's umask is 077
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        fsync_fd(fd)
    finally:
        os.close(fd)


def fsync_fd(fd: int) -> None:
    """Flush an open file or directory to disk; where the filesystem has no such fsync (a directory through
    some FUSE mounts, anything through some SFTP servers under sshfs), go on: the write or rename still stands."""
    try:
        os.fsync(fd)
    except OSError as error:
        if error.errno not in _FSYNC_UNSUPPORTED:
            raise


def fsync_dir(path: Path) -> None:
    """Make the entries of a directory (creations, renames) durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        fsync_fd(fd)
    finally:
        os.close(fd)


def remove_if_present(path: Path) -> None:
    """Unlink `path`; one that is gone already is what was wanted."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _remove_quietly(path: Path) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


# Some filesystems (some FUSE mounts) cannot fsync a directory, or at all; the rename still stands.
_FSYNC_UNSUPPORTED = {22, 95, 38}  # EINVAL, EOPNOTSUPP, ENOSYS
