"""The directory backend: one file per key under DIR (a local directory or a shared mount).

    DIR/jobs/JOB/job.json     the value of the key jobs/JOB/job.json
    DIR/.tmp/                 puts are staged here (same filesystem), then renamed to their key

A put writes DIR/.tmp/.PID.HEX12.tmp, fsyncs it, renames it onto the key's path
and fsyncs that directory: a reader sees the old file or the new one, whole, and
a staged file never appears under a key. DIR and the key's directories are made
as `mkdir -p` would, at the first put. A file left in .tmp/ is a put that crashed;
nothing reads it, and the first put of each DirectoryStore object (a worker opens
one per job) removes those older than STAGED_MAX_AGE (a day), as nodes reap tmp/.

Paths are walked one directory at a time from DIR, with O_NOFOLLOW relative to
open directory descriptors, so no key reaches outside DIR, whatever links were
placed inside it: a link on the path to a key is refused (StoreUnavailable), a
link at a key is no key to readers and is replaced (not followed) by a put. DIR
itself may be a link. Only regular files are keys. Listing one level is one
readdir, with no stat or read of what it lists. A delete unlinks the key's
file (a link there is unlinked, not followed), then removes the directories
it leaves empty, up to but not including the key's first segment (jobs/).
delete_prefix walks the prefix's directory the same way, one descriptor at a
time, and unlinks what it finds (a link is removed, never what it points to),
then removes the directories it left empty as a delete does.
"""

import errno
import os
import secrets
import shutil
import stat
import time
from contextlib import contextmanager
from pathlib import Path

from ..spool.atomic import fsync_fd
from ..spool.permissions import dir_mode, file_mode
from ..spool.files import read_chunks
from . import (STORE_ENV, ArtifactStore, StoredValue, StoreMissing, StoreUnavailable, check_key, check_prefix, deletable,
               is_key)

STAGING = ".tmp"
STAGED_MAX_AGE = 86400.0  # a staged file this old belongs to a put that crashed
_DIRECTORY = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_NO_DIRECTORY_HERE = (FileNotFoundError, NotADirectoryError)


class DirectoryStore(ArtifactStore):
    """The artifact store in a directory: `ls` and `cat` read it."""

    def __init__(self, directory):
        self.root = Path(os.path.abspath(directory))
        self.url = self.root.as_uri()
        self._reaped = False

    def put_bytes(self, key: str, data: bytes) -> None:
        self._put(check_key(key), lambda out: out.write(data))

    def put_stream(self, key: str, stream) -> None:
        self._put(check_key(key), lambda out: shutil.copyfileobj(stream, out, 1 << 20))

    def get_bytes(self, key: str) -> bytes:
        parts = check_key(key).split("/")
        with self._errors(key, "read"), self._directory(parts[:-1]) as parent:
            with open(self._open_regular(key, parent, parts[-1]), "rb") as file:
                return file.read()

    def open_value(self, key: str) -> StoredValue:
        parts = check_key(key).split("/")
        with self._errors(key, "read"), self._directory(parts[:-1]) as parent:
            fd = self._open_regular(key, parent, parts[-1])
        return FileValue(fd, lambda error: self._unavailable(key, "read", error))

    def exists(self, key: str) -> bool:
        parts = check_key(key).split("/")
        try:
            with self._directory(parts[:-1]) as parent:
                return stat.S_ISREG(os.stat(parts[-1], dir_fd=parent, follow_symlinks=False).st_mode)
        except _NO_DIRECTORY_HERE:
            return False
        except OSError as error:
            raise self._unavailable(key, "read", error) from None

    def list_children(self, prefix: str) -> list[str]:
        prefix = check_prefix(prefix)
        return sorted(name for name in self._listing(prefix, os.listdir) if is_key(prefix + name))

    def list_keys(self, prefix: str) -> list[str]:
        prefix = check_prefix(prefix)
        return sorted(self._listing(prefix, lambda directory: list(_keys_below(directory, prefix))))

    def delete(self, key: str) -> None:
        parts = check_key(key).split("/")
        try:
            with self._directory(parts[:-1]) as parent:
                if not stat.S_ISDIR(os.stat(parts[-1], dir_fd=parent, follow_symlinks=False).st_mode):
                    os.unlink(parts[-1], dir_fd=parent)
        except _NO_DIRECTORY_HERE:
            return
        except OSError as error:
            raise self._unavailable(key, "delete", error) from None
        self._remove_empty_directories(parts[:-1])

    def delete_prefix(self, prefix: str) -> int:
        """Every key under `prefix`, and whatever else is in its directory (links, FIFOs), walked by descriptors;
        how many keys (regular files) went."""
        parts = deletable(prefix).split("/")[:-1]
        with self._errors(prefix, "delete"):
            try:
                with self._directory(parts[:-1]) as parent:
                    removed = _remove_directory(parent, parts[-1])
            except (*_NO_DIRECTORY_HERE, StoreMissing):
                return 0  # nothing was ever stored under it
        self._remove_empty_directories(parts[:-1])
        return removed

    def _remove_empty_directories(self, parts: list[str]) -> None:
        """rmdir DIR/PARTS and its parents while they are empty, keeping the first segment's directory."""
        for depth in range(len(parts), 1, -1):
            try:
                with self._directory(parts[:depth - 1]) as parent:
                    os.rmdir(parts[depth - 1], dir_fd=parent)
            except OSError:
                return  # not empty (or gone, or a link): what is left belongs to other keys

    def key_sizes(self, prefix: str) -> dict[str, int]:
        prefix = check_prefix(prefix)
        return dict(sorted(self._listing(prefix, lambda directory: list(_sizes_below(directory, prefix)))))

    def _listing(self, prefix: str, read) -> list[str]:
        """read(descriptor of the prefix's directory), or [] when nothing was ever stored under it."""
        try:
            with self._directory(prefix.split("/")[:-1]) as directory:
                return read(directory)
        except _NO_DIRECTORY_HERE:
            return []
        except OSError as error:
            raise self._unavailable(prefix, "list", error) from None

    def _put(self, key: str, fill) -> None:
        parts = key.split("/")
        with self._errors(key, "write"):
            self.root.mkdir(parents=True, exist_ok=True)
            with self._directory([STAGING], create=True) as staging, \
                    self._directory(parts[:-1], create=True) as parent:
                self._reap_once(staging)
                staged = _stage(staging, fill)
                try:
                    os.rename(staged, parts[-1], src_dir_fd=staging, dst_dir_fd=parent)
                except BaseException:
                    _unlink_quietly(staged, staging)
                    raise
                fsync_fd(parent)

    def _reap_once(self, staging: int) -> None:
        if not self._reaped:
            self._reaped = True
            _reap_staged(staging, time.time() - STAGED_MAX_AGE)

    @contextmanager
    def _directory(self, parts: list[str], create: bool = False):
        """A descriptor of DIR/PARTS, walked without following links; closed on leaving."""
        fd = self._open_root()
        try:
            for depth, part in enumerate(parts, 1):
                child = self._descend(fd, part, create, "/".join(parts[:depth]))
                os.close(fd)
                fd = child
            yield fd
        finally:
            os.close(fd)

    def _descend(self, fd: int, name: str, create: bool, shown: str) -> int:
        try:
            return os.open(name, _DIRECTORY, dir_fd=fd)
        except FileNotFoundError:
            if not create:
                raise
        except OSError as error:
            if error.errno in (errno.ENOTDIR, errno.ELOOP) and _is_link(fd, name):
                raise StoreUnavailable(f"{shown} in the artifact store {self.url} is a symlink: the store follows "
                                       "no links inside its directory; replace it with a directory") from None
            raise
        _make_directory(fd, name)
        return os.open(name, _DIRECTORY, dir_fd=fd)

    def _open_root(self) -> int:
        try:
            return os.open(self.root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except _NO_DIRECTORY_HERE:
            raise StoreMissing(f"no artifact store at {self.root}: there is no such directory; check --store (or "
                               f"${STORE_ENV}); a directory store is made by the first job that writes to it") from None

    @contextmanager
    def _errors(self, key: str, action: str):
        """OSError as a person reads it: a missing key when reading, else what failed and where."""
        try:
            yield
        except _NO_DIRECTORY_HERE as error:
            if action == "write":
                raise self._unavailable(key, action, error) from None
            raise StoreMissing.for_key(key, self.url) from None
        except OSError as error:
            raise self._unavailable(key, action, error) from None

    def _unavailable(self, key: str, action: str, error: OSError) -> StoreUnavailable:
        if error.errno == errno.ELOOP:  # O_NOFOLLOW met a link at the key itself
            return self._not_regular(key)
        where = f" ({error.filename})" if error.filename else ""
        return StoreUnavailable(f"cannot {action} {key} in the artifact store {self.url}: {error.strerror}{where}")

    def _open_regular(self, key: str, parent: int, name: str) -> int:
        """A descriptor of the regular file NAME in `parent`: no link is followed, no FIFO waited on."""
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=parent)
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            os.close(fd)
            missing = stat.S_ISDIR(mode)  # a directory is a prefix, not a key
            raise StoreMissing.for_key(key, self.url) if missing else self._not_regular(key)
        return fd

    def _not_regular(self, key: str) -> StoreUnavailable:
        return StoreUnavailable(f"{key} in the artifact store {self.url} is not a regular file (a link, a FIFO, "
                                "a device): the store reads only regular files and follows no links")


class FileValue(StoredValue):
    """A regular file's descriptor as a value: a put renames a new file over the key, so this one stays whole."""

    def __init__(self, fd: int, unavailable):
        self.fd, self.unavailable = fd, unavailable  # unavailable(OSError) -> the error to raise
        self.size = os.fstat(fd).st_size

    def chunks(self, first: int = 0, last: int | None = None):
        try:
            yield from read_chunks(self.fd, *self.span(first, last))
        except OSError as error:
            raise self.unavailable(error) from None

    def close(self) -> None:
        os.close(self.fd)


def _keys_below(fd: int, prefix: str):
    return (key for key, _ in _files_below(fd, prefix))


def _sizes_below(fd: int, prefix: str):
    """(key, size) of each key below the directory `fd`: one lstat per file, no read."""
    return ((key, entry.stat(follow_symlinks=False).st_size) for key, entry in _files_below(fd, prefix))


def _files_below(fd: int, prefix: str):
    """(key, DirEntry) of each regular file below the directory `fd`, walked without following a link."""
    with os.scandir(fd) as entries:
        for entry in entries:
            key = prefix + entry.name
            if not is_key(key):
                continue
            if entry.is_dir(follow_symlinks=False):
                yield from _files_in_child(fd, entry.name, key + "/")
            elif entry.is_file(follow_symlinks=False):
                yield key, entry


def _files_in_child(fd: int, name: str, prefix: str):
    try:
        child = os.open(name, _DIRECTORY, dir_fd=fd)
    except _NO_DIRECTORY_HERE:
        return  # removed, or replaced by a file, since it was listed
    try:
        yield from _files_below(child, prefix)
    finally:
        os.close(child)


def _remove_directory(parent: int, name: str) -> int:
    """Remove directory NAME in `parent` with all it holds, entering no link; how many regular files went."""
    try:
        fd = os.open(name, _DIRECTORY, dir_fd=parent)
    except OSError as error:
        if error.errno not in (errno.ENOTDIR, errno.ELOOP):
            raise
        if _is_link(parent, name):
            os.unlink(name, dir_fd=parent)  # a link where a directory was: no key, and never followed
        return 0
    try:
        removed = _empty_directory(fd)
    finally:
        os.close(fd)
    try:
        os.rmdir(name, dir_fd=parent)
    except OSError as error:
        if error.errno not in (errno.ENOTEMPTY, errno.EEXIST, errno.ENOENT):
            raise  # a put that just made something under it keeps it
    return removed


def _empty_directory(fd: int) -> int:
    with os.scandir(fd) as entries:
        listed = [(entry.name, entry.is_dir(follow_symlinks=False), entry.is_file(follow_symlinks=False))
                  for entry in entries]
    removed = 0
    for name, is_directory, is_file in listed:
        if is_directory:
            removed += _remove_directory(fd, name)
            continue
        try:
            os.unlink(name, dir_fd=fd)
            removed += is_file
        except FileNotFoundError:
            pass
    return removed


def _reap_staged(staging: int, cutoff: float) -> None:
    """Remove staged files older than `cutoff`: puts that crashed before their rename."""
    with os.scandir(staging) as entries:
        for entry in entries:
            try:
                if not entry.is_dir(follow_symlinks=False) and entry.stat(follow_symlinks=False).st_mtime < cutoff:
                    os.unlink(entry.name, dir_fd=staging)
            except OSError:
                pass  # another put reaped it first


def _stage(staging: int, fill) -> str:
    """A new file in .tmp/ holding what fill(file) wrote, fsynced; its name."""
    name = f".{os.getpid()}.{secrets.token_hex(6)}.tmp"
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        with open(os.open(name, flags, file_mode(staging), dir_fd=staging), "wb") as out:
            fill(out)
            out.flush()
            os.fsync(out.fileno())
    except BaseException:
        _unlink_quietly(name, staging)
        raise
    return name


def _make_directory(fd: int, name: str) -> None:
    try:
        os.mkdir(name, dir_mode(fd), dir_fd=fd)  # the group's in a shared store, else this user's
    except FileExistsError:
        return  # another writer made it meanwhile
    fsync_fd(fd)


def _is_link(fd: int, name: str) -> bool:
    try:
        return stat.S_ISLNK(os.stat(name, dir_fd=fd, follow_symlinks=False).st_mode)
    except OSError:
        return False


def _unlink_quietly(name: str, fd: int) -> None:
    try:
        os.unlink(name, dir_fd=fd)
    except OSError:
        pass
