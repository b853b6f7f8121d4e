"""Atomic writes: stage in tmp/, fsync, rename into place, fsync the directory.

Every file another process may read is written this way, so a reader sees the
whole file or none of it. A failed write or fsync removes the staged file and
raises: it is never retried as if it had succeeded.

`sync=False` leaves out the fsyncs: readers still see the whole file or none of
it (the rename is atomic for every process of this machine, and a kill -9 of
the writer loses nothing the kernel holds), but a crash of the machine may lose
the file or leave it empty. Only files that are rebuilt after such a crash are
written so (the hub's derived state/: hub/unsynced.py).

The rename replaces whatever is at the target name (a symlink planted there is
replaced, never written through). Given a `root`, the target's path is relative
to it and its directories are entered (and made) one at a time without
following a link (spool/files.py walks them), and the staging directory is not
entered through a link either: a link on the way is refused with an OSError.
"""

import os
from pathlib import Path

from .files import DIRECTORY_FLAGS, open_directory_under
from .permissions import PRIVATE_FILE, file_mode



def write_atomically(path: Path, data: bytes, tmp_dir: Path, *, sync_dir: bool = True, root=None,
                     sync: bool = True) -> Path:
    """Write `data` to `path` (under `root`, if given) through `tmp_dir` (same filesystem); return `path`.
    `sync=False`: no fsync at all (see above)."""
    sync_dir = sync_dir and sync
    if root is not None:
        return _write_under(root, Path(path), data, tmp_dir, sync_dir, sync)
    staged = Path(tmp_dir) / staged_name(path)
    try:
        write_synced(staged, data, sync=sync)
        os.rename(staged, path)
    except BaseException:
        remove_quietly(staged)
        raise
    if sync_dir:
        fsync_dir(Path(path).parent)
    return Path(path)


def _write_under(root, relative: Path, data: bytes, tmp_dir: Path, sync_dir: bool, sync: bool) -> Path:
    staging = os.open(tmp_dir, DIRECTORY_FLAGS)
    try:
        parent = open_directory_under(root, relative.parent, create=True)
        try:
            _stage_and_rename(staging, parent, relative.name, data, sync)
            if sync_dir:
                fsync_fd(parent)
        finally:
            os.close(parent)
    finally:
        os.close(staging)
    return relative


def _stage_and_rename(staging: int, parent: int, name: str, data: bytes, sync: bool) -> None:
    staged = staged_name(name)
    try:
        write_synced(staged, data, dir_fd=staging, sync=sync)
        os.rename(staged, name, src_dir_fd=staging, dst_dir_fd=parent)
    except BaseException:
        remove_quietly(staged, dir_fd=staging)
        raise


def staged_name(path) -> str:
    """The name a file for `path` is staged under in a tmp/ directory: hidden, this process's, unique."""
    return f".{Path(path).name}.{os.getpid()}.{os.urandom(4).hex()}.tmp"


def write_synced(path: Path, data: bytes, dir_fd: int | None = None, sync: bool = True) -> None:
    """Create `path` (in directory `dir_fd`, if given) with `data`, flushed to disk before this returns
    (unless not `sync`); 0600, or 0640 in a shared directory."""
    mode = file_mode(dir_fd if dir_fd is not None else Path(path).parent)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, mode, dir_fd=dir_fd)
    try:
        if mode != PRIVATE_FILE:
            os.fchmod(fd, mode)  # the group reads it even if the writer's umask is 077
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        if sync:
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


def remove_if_present(path: Path, root=None) -> None:
    """Unlink `path` (under `root`, reached without links, if given); one that is gone already is what was wanted."""
    if root is None:
        _unlink_if_present(path)
        return
    try:
        parent = open_directory_under(root, Path(path).parent)
    except FileNotFoundError:
        return
    try:
        _unlink_if_present(Path(path).name, dir_fd=parent)
    finally:
        os.close(parent)


def _unlink_if_present(path, dir_fd: int | None = None) -> None:
    try:
        os.unlink(path, dir_fd=dir_fd)
    except FileNotFoundError:
        pass


def remove_quietly(path, dir_fd: int | None = None) -> None:
    """Unlink a staged file that is given up; whatever fails, the failure that gave it up is the one told."""
    try:
        os.unlink(path, dir_fd=dir_fd)
    except OSError:
        pass


# Some filesystems (some FUSE mounts) cannot fsync a directory, or at all; the rename still stands.
_FSYNC_UNSUPPORTED = {22, 95, 38}  # EINVAL, EOPNOTSUPP, ENOSYS
