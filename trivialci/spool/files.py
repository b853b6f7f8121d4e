"""Reading files that someone else may have replaced: never a link, never a special file, never too much.

Anyone who can write the spool (and, without a sandbox, any build) can put a
symlink to a secret where a state file or heartbeat was, a FIFO that blocks
its reader for ever, or a file of gigabytes. Every read of such a file goes
through here:

- it is opened with O_NOFOLLOW|O_NONBLOCK (a link is refused, a FIFO is not
  waited on) and checked with fstat on the descriptor that is then read: only
  a regular file is read (the check and the read see the same file);
- given a `root`, the path is walked from it one directory at a time, each
  opened with O_NOFOLLOW|O_DIRECTORY, so a link anywhere on the way (state/jobs
  made a link to /etc) is refused too, and what is read is physically under root;
  `root` is a path (its last part must not be a link either) or an open
  directory descriptor (a directory checked once, used for every file under it);
- at most `limit` bytes are read; a longer file is refused;
- a file served to others (a log, an artifact) is never read whole: read_chunks
  hands it over CHUNK_BYTES at a time, from its descriptor (pread: no shared offset).

Listing a directory and looking at an entry (`list_names`, `lstat_under`) walk
the same way; `open_directory_under(..., create=True)` makes the missing
directories on the way as `mkdir -p` would, still entering none through a link.

Refusals are OSError (ELOOP for a link, EINVAL for a special file, EFBIG for a
file over the limit), so callers treat them like a file that cannot be read.
"""

import errno
import json
import os
import stat
from pathlib import Path

from .permissions import PRIVATE_DIR, SHARED_DIR, is_shared

READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
DIRECTORY_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
MAX_STATE_BYTES = 1 << 20  # a state file, heartbeat or record is a few KiB
CHUNK_BYTES = 256 << 10  # what one reader of a large file holds in memory at a time


def open_regular(path, root=None) -> int:
    """A blocking descriptor of `path` (relative to `root` when given), which is a regular file."""
    if root is None:
        return _checked(os.open(path, READ_FLAGS), path)
    parent = open_directory_under(root, Path(path).parent)
    try:
        return _checked(os.open(Path(path).name, READ_FLAGS, dir_fd=parent), path)
    finally:
        os.close(parent)


def open_directory_under(root, relative, create: bool = False) -> int:
    """A descriptor of directory `relative` under `root`, walked without following a link on the way
    (with `create`, missing directories are made, like mkdir -p)."""
    fd = _open_root(root)
    for part in Path(relative).parts:
        if part in ("..", "/"):
            os.close(fd)
            raise OSError(errno.EINVAL, "the path leaves its root", str(relative))
        try:
            next_fd = _enter(fd, part, create)
        finally:
            os.close(fd)
        fd = next_fd
    return fd


def list_names(relative, root) -> list[str]:
    """The names in directory `relative` under `root`; [] when it is missing, not a directory or reached by a link."""
    try:
        fd = open_directory_under(root, relative)
    except OSError:
        return []
    try:
        return os.listdir(fd)
    finally:
        os.close(fd)


def lstat_under(relative, root) -> os.stat_result:
    """The stat of the entry `relative` under `root` itself (a link is not followed), reached without links."""
    parent = open_directory_under(root, Path(relative).parent)
    try:
        return os.stat(Path(relative).name, dir_fd=parent, follow_symlinks=False)
    finally:
        os.close(parent)


def read_regular(path, limit: int = MAX_STATE_BYTES, root=None) -> bytes:
    """The bytes of a regular file of at most `limit` bytes."""
    with os.fdopen(open_regular(path, root), "rb") as handle:
        return read_limited(handle, limit, path)


def read_limited(handle, limit: int, path) -> bytes:
    """What is left in an open file, refused (EFBIG) when it is more than `limit` bytes."""
    data = handle.read(limit + 1)
    if len(data) > limit:
        raise OSError(errno.EFBIG, f"larger than {limit} bytes", str(path))
    return data


def read_json(path, limit: int = MAX_STATE_BYTES, root=None):
    """The JSON value of a regular file, or None when it is missing, not a regular file, too large or not JSON."""
    try:
        return json.loads(read_regular(path, limit, root))
    except (OSError, ValueError, RecursionError):
        return None


def read_chunks(fd: int, first: int, last: int, chunk: int = CHUNK_BYTES):
    """Bytes first..last (inclusive) of a regular file's descriptor, `chunk` at a time; fewer if it was cut short."""
    while first <= last:
        data = os.pread(fd, min(chunk, last - first + 1), first)
        if not data:
            return
        first += len(data)
        yield data
def _open_root(root) -> int:
    """A new descriptor of `root`: a path (not a link) or an open directory descriptor."""
    if isinstance(root, int):
        return os.open(".", DIRECTORY_FLAGS, dir_fd=root)
    return os.open(root, DIRECTORY_FLAGS)


def _enter(fd: int, name: str, create: bool) -> int:
    try:
        return os.open(name, DIRECTORY_FLAGS, dir_fd=fd)
    except FileNotFoundError:
        if not create:
            raise
    mode = SHARED_DIR if is_shared(fd) else PRIVATE_DIR  # 0700, or 02770 in a spool shared with a group
    try:
        os.mkdir(name, mode & 0o777, dir_fd=fd)
    except FileExistsError:
        mode = None  # another writer made it meanwhile (or put something else there: the open says so)
    made = os.open(name, DIRECTORY_FLAGS, dir_fd=fd)
    if mode is not None:
        os.fchmod(made, mode)  # the setgid bit, which mkdir leaves to the umask's mercy
    return made


def _checked(fd: int, path) -> int:
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, "not a regular file", str(path))
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd
