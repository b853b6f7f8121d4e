"""The artifact store: the durable history of jobs, readable without the hub.

A store maps keys to bytes. Jobs write, and `trivialci history` reads:

    jobs/JOB/job.json       the job's record (branch, sha, kind, worker, status, times, exit code)
    jobs/JOB/log.txt        the job's output
    jobs/JOB/files/...      its artifacts, under the names they had in $TRIVIALCI_ARTIFACTS

A store is opened from a URL: `file:///ABSOLUTE/DIR` or a plain directory path
(the directory backend, store/directory.py), or `s3://BUCKET/PREFIX` (the S3
backend, store/s3.py: the only module that imports boto3, loaded only for such a URL).

Keys are relative, '/'-separated paths of UTF-8 text, at most 1024 bytes, with
segments of at most 255 bytes. They have no empty, '.' or '..' segment, no
leading or trailing '/', no control character (NUL, newline, ESC, ...), and
their first segment does not start with '.' (names such as `.tmp` belong to the
backend). A key that breaks a rule is refused with BadInput before anything is
read or written. A prefix is '' (the whole store) or a key, with or without a
trailing '/'; it names a directory: "jobs/a" covers jobs/a/x, never jobs/ab/x.

Guarantees every backend keeps (tests/test_store.py and tests/test_store_writes.py check them all):
- a reader of a key sees a whole value, the old one or the new one, never a part;
- open_value streams a value (a log or an artifact can be gigabytes): its size, then its
  bytes at most READ_CHUNK at a time, from any byte on; the bytes are those of the value
  opened, never mixed with a put made meanwhile (a backend that cannot keep to that value
  raises StoreUnavailable instead);
- put_* replaces what was under the key; a failed put leaves the old value;
- list_children and list_keys are sorted (by code point, which is UTF-8 byte order);
- list_children lists one level and reads no values, so listing 10,000 jobs is cheap;
- a missing key raises StoreMissing (exit status 2), naming the key and the store;
- delete_keys returns once every key it was given is gone; the keys of one call may go in any order
  (S3 removes up to 1,000 in one request), so a caller that needs an order (a job's job.json before
  its log) makes two calls; deleting a key that is not there is no error;
- key_sizes (and usage) take sizes from a listing, reading no value;
- delete_prefix removes every key under a prefix, never the whole store (retention removes a job with it,
  and a retry clears its job's files/ with it; delete_tree is the same call under its older name).

What is stored is hostile too: a build can replace a file with a symlink to a
key, a directory with a link to ~/.ssh, or its whole artifacts directory with
one, and keep doing so while the upload runs. So put_file of a path opens it
with O_NOFOLLOW|O_NONBLOCK and stores it only if fstat on that descriptor says
regular (a link or FIFO is BadInput, never followed or waited on), and put_tree
stores only regular files physically under its root: the root is opened once
without following a link at its last part (or given as an open directory
descriptor), walked one directory at a time with O_NOFOLLOW relative to open
descriptors, and each file is opened the same way when it is stored and
checked with fstat on the descriptor that is then read and uploaded. An entry
that is not a regular file, or not one any more when its turn comes, is not
stored (and not in the keys put_tree returns). put_file also takes an open
binary file (the worker's log, read through the descriptor it wrote with).

The layer: this package (the backends, and history.py, which reads job records
back for `trivialci history` and the UI) imports the spool layer's atomic
writes, trivialci.errors and the standard library; boto3 in s3.py alone.
Nothing here knows of the hub, workers or git.
"""

import errno
import os
import re
import unicodedata
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import unquote, urlsplit

from ..errors import BadInput, TrivialCiError
from ..spool.files import CHUNK_BYTES, DIRECTORY_FLAGS, open_regular

STORE_ENV = "TRIVIALCI_STORE"
MAX_KEY_BYTES = 1024  # S3's limit, so that a key works on every backend
MAX_SEGMENT_BYTES = 255  # a file name's limit on common filesystems
_URL_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")
READ_CHUNK = CHUNK_BYTES  # the most a streamed read holds at a time


class StoreMissing(TrivialCiError):
    """A key is not in the store, or the store itself is not there."""

    exit_code = 2

    def __init__(self, message: str, key: str | None = None):
        super().__init__(message)
        self.key = key  # None when the whole store is missing

    @classmethod
    def for_key(cls, key: str, url: str) -> "StoreMissing":
        return cls(f"no {key} in the artifact store {url}: nothing was stored under that key; "
                   f"check the key, and that --store (or ${STORE_ENV}) names the store the jobs write to", key)


class StoreUnavailable(TrivialCiError):
    """The store could not be read or written (permissions, full disk, a link or device in the way)."""

    exit_code = 4


class ArtifactStore:
    """Where jobs keep what outlives them. A backend implements the methods that raise NotImplementedError.

    The contract is the module docstring; tests/test_store.py runs one suite against every backend.
    """

    url: str

    def put_bytes(self, key: str, data: bytes) -> None:
        """Store `data` under `key`, replacing what was there; readers see the old or the new value, whole."""
        raise NotImplementedError

    def put_file(self, key: str, source) -> None:
        """Store under `key` what `source` holds, streamed (artifacts can be large): a path to a regular file
        (a link or special file is BadInput), or a binary file object, read from where it stands to its end."""
        check_key(key)
        if hasattr(source, "read"):
            self.put_stream(key, source)
            return
        with open_source(source, key) as stream:
            self.put_stream(key, stream)

    def put_stream(self, key: str, stream) -> None:
        """Store what the binary file object `stream` reads from where it stands to its end, under a checked key."""
        raise NotImplementedError

    def get_bytes(self, key: str) -> bytes:
        """The value under `key`; StoreMissing when there is none."""
        raise NotImplementedError

    def open_value(self, key: str) -> "StoredValue":
        """The value under `key`, to stream (use it in a `with` block); StoreMissing when there is none."""
        raise NotImplementedError

    def exists(self, key: str) -> bool:
        raise NotImplementedError

    def list_children(self, prefix: str) -> list[str]:
        """Sorted names one level below `prefix` ("jobs/" -> job ids), without reading any value."""
        raise NotImplementedError

    def list_keys(self, prefix: str) -> list[str]:
        """Every key under `prefix` (whole keys, not names), sorted."""
        raise NotImplementedError

    def delete_keys(self, keys: list[str]) -> int:
        """Remove `keys`, in any order, all checked first; how many were asked for. A key not there is no error."""
        keys = [check_key(key) for key in keys]
        for key in keys:
            self.delete(key)
        return len(keys)

    def delete(self, key: str) -> None:
        """Remove `key` if it is there."""
        raise NotImplementedError

    def delete_prefix(self, prefix: str) -> int:
        """Remove every key under `prefix` ('' is refused: a store is not emptied by mistake); how many.
        Nothing under it is fine. S3 lists the keys and removes them DELETE_BATCH at a time."""
        keys = self.list_keys(deletable(prefix))
        return self.delete_keys(keys) if keys else 0

    def delete_tree(self, prefix: str) -> None:
        """delete_prefix, under the name the worker's upload calls it by."""
        self.delete_prefix(prefix)

    def key_sizes(self, prefix: str) -> dict[str, int]:
        """{key: size in bytes} of every key under `prefix`, sorted by key, from a listing: no value is read."""
        raise NotImplementedError

    def usage(self, prefix: str) -> tuple[int, int]:
        """(keys, bytes) under `prefix`."""
        sizes = self.key_sizes(prefix)
        return len(sizes), sum(sizes.values())

    def put_tree(self, prefix: str, directory) -> list[str]:
        """Store each regular file under `directory` (a path, or an open directory descriptor) as
        PREFIX/RELATIVE/PATH; return the keys stored, sorted.

        Symlinks are neither followed nor stored: a link left in a build's output must not
        upload what it points to (a home directory, a key); see the module docstring. Every
        key is checked before the first file is stored, so a refused name (BadInput) leaves
        the store as it was.
        """
        prefix = check_prefix(prefix)
        with _opened_tree(directory) as root:
            files = {check_key(prefix + name): TreeFile(root, name) for name in regular_names(root)}
            return self.put_files(files)

    def put_files(self, files: dict) -> list[str]:
        """Store each file (key -> path, file object or TreeFile); the keys stored, sorted. One at a time
        here; a backend may overlap them."""
        return sorted(key for key in sorted(files) if self.put_source(key, files[key]))

    def put_source(self, key: str, source) -> bool:
        """put_file, where a TreeFile that is no regular file under its root any more is skipped (False)."""
        if not isinstance(source, TreeFile):
            self.put_file(key, source)
            return True
        stream = source.open(key)
        if stream is None:
            return False
        with stream:
            self.put_file(key, stream)
        return True

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.url!r})"


class StoredValue:
    """One value being read: its `size`, then its bytes by chunks(); close() (or leaving `with`) ends the read."""

    size: int

    def chunks(self, first: int = 0, last: int | None = None):
        """Bytes first..last (inclusive; None or past the end: to the end), at most READ_CHUNK at a time. Once."""
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def span(self, first: int, last: int | None) -> tuple[int, int]:
        """first..last within the value (last < first: nothing to read)."""
        return first, self.size - 1 if last is None else min(last, self.size - 1)

    def __enter__(self) -> "StoredValue":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def open_store(url) -> ArtifactStore:
    """The store at `url`: file:///ABSOLUTE/DIR, a directory path, or s3://BUCKET/PREFIX."""
    if not url:
        raise BadInput(f"no artifact store given: pass --store file:///DIR (or a directory), or set ${STORE_ENV}")
    url = os.fspath(url)
    if url.startswith("s3://"):
        return _s3_store(url)
    if url.startswith("file:"):
        return DirectoryStore(_file_url_path(url))
    if _URL_SCHEME.match(url):
        raise BadInput(f"unknown artifact store URL {url!r}: use file:///ABSOLUTE/DIR, a directory path "
                       "or s3://BUCKET/PREFIX")
    return DirectoryStore(url)


def _s3_store(url: str) -> ArtifactStore:
    """An S3Store; boto3 is imported here, at the first s3:// URL, so that file stores never load it."""
    try:
        from .s3 import S3Store
    except ImportError as error:
        raise StoreUnavailable(f"cannot open {url}: S3 stores need boto3 ({error}); "
                               "install it with pip install 'trivialci[s3]'") from None
    return S3Store(url)


def _file_url_path(url: str) -> str:
    parts = urlsplit(url)
    path = unquote(parts.path)
    if parts.netloc not in ("", "localhost") or not path.startswith("/"):
        raise BadInput(f"{url!r} is not a file URL of an absolute directory: write file:///ABSOLUTE/DIR "
                       "(three slashes), or give the directory as a plain path (relative paths are fine there)")
    if parts.query or parts.fragment:
        raise BadInput(f"{url!r} has a '?' or '#' part: write them as %3F and %23 in a file URL, or give a plain path")
    return path


def check_key(key: str) -> str:
    """`key` if it follows the key rules (module docstring); BadInput that names the broken rule otherwise."""
    problem = key_problem(key)
    if problem:
        raise BadInput(f"bad artifact store key {key!r}: {problem} (keys look like jobs/JOB/log.txt)")
    return key


def check_prefix(prefix: str) -> str:
    """'' or the key `prefix` names, with one trailing '/' (BadInput as check_key)."""
    if prefix == "":
        return ""
    return check_key(prefix[:-1] if isinstance(prefix, str) and prefix.endswith("/") else prefix) + "/"


def deletable(prefix: str) -> str:
    """A checked prefix that is not '' (the whole store): what a delete may be given."""
    prefix = check_prefix(prefix)
    if not prefix:
        raise BadInput("refusing to delete the whole artifact store: name a prefix such as jobs/JOB/")
    return prefix


def is_key(text: str) -> bool:
    return key_problem(text) is None


def key_problem(key) -> str | None:
    """Which key rule `key` breaks, in words, or None."""
    if not isinstance(key, str) or not key:
        return "it is empty" if key in ("", None) else "it is not a string"
    if key.startswith("/"):
        return "it must be relative (no leading '/')"
    if any(unicodedata.category(c) == "Cc" for c in key):
        return "it holds a control character (NUL, newline, ESC, ...)"
    return _encoding_problem(key) or _segment_problem(key.split("/"))


def _encoding_problem(key: str) -> str | None:
    try:
        size = len(key.encode("utf-8"))
    except UnicodeEncodeError:
        return "it is not valid UTF-8"
    return f"it is longer than {MAX_KEY_BYTES} bytes" if size > MAX_KEY_BYTES else None


def _segment_problem(segments: list[str]) -> str | None:
    if "" in segments:
        return "it has an empty segment ('//', or a '/' at the end)"
    if "." in segments or ".." in segments:
        return "'.' and '..' segments are not allowed"
    if segments[0].startswith("."):
        return "its first segment starts with '.' (such names belong to the store itself)"
    if any(len(segment.encode()) > MAX_SEGMENT_BYTES for segment in segments):
        return f"a segment is longer than {MAX_SEGMENT_BYTES} bytes"
    return None


class TreeFile:
    """A file under an open directory, opened only when it is stored: never through a link, only if regular."""

    _GONE = (errno.ENOENT, errno.ELOOP, errno.ENOTDIR, errno.EINVAL)  # removed, or a link/special file now

    def __init__(self, root: int, name: str):
        self.root, self.name = root, name

    def open(self, key: str):
        """A binary file of it, checked on its descriptor; None when it is not a regular file under the root now."""
        try:
            return os.fdopen(open_regular(self.name, root=self.root), "rb")
        except OSError as error:
            if error.errno in self._GONE:
                return None
            raise BadInput(f"cannot read {self.name} to store it as {key}: {error.strerror}") from None


def open_source(path, key: str):
    """The file at `path` opened for storing: a regular file, never through a link at its name, never waited on."""
    try:
        return os.fdopen(open_regular(path), "rb")
    except OSError as error:
        why = {errno.ELOOP: "it is a symlink, not a regular file (the store follows no links)",
               errno.EINVAL: "it is not a regular file (a FIFO, a device or a directory)"}.get(error.errno)
        raise BadInput(f"cannot read {path} to store it as {key}: {why or error.strerror}") from None


@contextmanager
def _opened_tree(directory):
    """A descriptor of the directory to store: given as one, or a path whose last part is not a link."""
    try:
        fd = _open_tree_root(directory)
    except OSError as error:
        raise _unstorable_tree(directory, error) from None
    try:
        yield fd
    finally:
        os.close(fd)


def _open_tree_root(directory) -> int:
    if isinstance(directory, int):
        return os.open(".", DIRECTORY_FLAGS, dir_fd=directory)
    return os.open(directory, DIRECTORY_FLAGS)


def _unstorable_tree(directory, error: OSError) -> BadInput:
    if not isinstance(directory, int) and os.path.islink(directory):
        return BadInput(f"{directory} is a symlink: the store follows no links, so nothing under it is stored")
    if error.errno in (errno.ENOENT, errno.ENOTDIR):
        return BadInput(f"no directory at {directory} to store")
    return BadInput(f"cannot read {directory} to store it: {error.strerror}")


def regular_names(root: int, below: str = "") -> list[str]:
    """'/'-separated names of the regular files under the open directory `root`, walked without links."""
    found = []
    with os.scandir(root) as entries:
        for entry in entries:
            if entry.is_file(follow_symlinks=False):
                found.append(below + entry.name)
            elif entry.is_dir(follow_symlinks=False):
                found += _names_in_child(root, entry.name, below + entry.name + "/")
    return found


def _names_in_child(parent: int, name: str, below: str) -> list[str]:
    try:
        child = os.open(name, DIRECTORY_FLAGS, dir_fd=parent)
    except OSError as error:
        if error.errno in TreeFile._GONE:
            return []  # removed, or swapped for a link, since it was listed
        raise BadInput(f"cannot read {below} to store it: {error.strerror}") from None
    try:
        return regular_names(child, below)
    finally:
        os.close(child)


def regular_files(directory) -> list[tuple[str, Path]]:
    """(relative '/'-separated name, path) of every regular file under `directory`, links not followed."""
    with _opened_tree(directory) as root:
        return [(name, Path(directory, name)) for name in regular_names(root)]


# The backends subclass ArtifactStore, so they are imported once it exists.
from .directory import DirectoryStore  # noqa: E402

__all__ = ["ArtifactStore", "DirectoryStore", "StoreMissing", "StoreUnavailable", "StoredValue", "STORE_ENV",
           "READ_CHUNK", "open_store", "check_key", "check_prefix", "is_key"]
