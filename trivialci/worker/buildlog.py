"""A build's live log: WORKDIR/logs/JOB.log, each line prefixed with the UTC time it was read.

Line format: `2026-11-25T03:30:01.123Z ` then the line as UTF-8 (bytes that are
not UTF-8 become U+FFFD, so the log is always valid text), then its newline. A last line without a
newline is written at EOF, prefixed too. The copier drains the build's pipe
as fast as it can, so the build never blocks on a full pipe, and flushes each
line so that a log server sees it at once. WORKDIR/logs/JOB.ended marks a log
that is complete: jobrun writes it when the job is over.

A log has a byte budget (LogBudget): once the file would pass it, the copier
writes one last line saying the log was cut, and drops the rest of the output
while it goes on draining the pipe (the build runs on). The file never grows
past the budget, the cut line included, so the log server serves at most that.

The secrets the build was given are masked (***) in each line before it is
written (secrets.SecretMask): a value split across writes is whole once its
line is; a line that never ends is written in pieces that keep back a tail
as long as the longest secret, so no piece ends inside one.

The build can write the worker's disk (when it runs without a sandbox): it may
replace its log with a link to a secret, or a FIFO. So the worker opens the log
once (BuildLog), reaching WORKDIR/logs without following a link and replacing
whatever is not a regular file at the log's name; it appends only through that
descriptor and uploads what that descriptor holds: what is stored as log.txt
is what the worker wrote, whatever is at the log's name meanwhile. The end
marker is written the same way (a link at its name is replaced, not followed).
"""

import errno
import io
import os
import stat
import threading
import time
from pathlib import Path

from ..spool.files import open_directory_under
from .secrets import SecretMask

READ_SIZE = 65536
CUT_LINE_ROOM = 200  # bytes kept free under the budget for the line that says the log was cut
_APPEND = os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


def line_time(now: float | None = None) -> bytes:
    """The prefix of a line read at `now`: its UTC time to the millisecond."""
    now = time.time() if now is None else now
    millis = int(now * 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(millis // 1000)).encode() + b".%03dZ " % (millis % 1000)


def ended_marker(log_path: Path) -> Path:
    return Path(log_path).with_suffix(".ended")


class BuildLog:
    """WORKDIR/logs/JOB.log as the worker made it: one descriptor, kept for the whole job (see the docstring)."""

    def __init__(self, workdir: Path, job: str):
        self.path, self.job = Path(workdir) / "logs" / f"{job}.log", job
        Path(workdir).mkdir(parents=True, exist_ok=True)
        workdir_fd = os.open(workdir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)  # the operator's: may be a link
        try:
            self.directory = _logs_directory(workdir_fd)
        finally:
            os.close(workdir_fd)
        try:
            self.fd = _open_regular_for_append(self.directory, self.path.name)
        except BaseException:
            os.close(self.directory)
            raise

    def append(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(self.fd, view):]

    def appender(self):
        """A binary file that appends to the log (its own descriptor of it, for the copier thread)."""
        return os.fdopen(os.dup(self.fd), "ab")

    def reader(self):
        """A binary file of what the log holds now, from its start, read through the kept descriptor."""
        return io.BufferedReader(_SnapshotReader(self.fd, os.fstat(self.fd).st_size), READ_SIZE)

    def mark_ended(self, text: str) -> None:
        """Write JOB.ended beside the log: whatever was at its name is replaced, never written through."""
        name = ended_marker(self.path).name
        try:
            os.unlink(name, dir_fd=self.directory)
        except FileNotFoundError:
            pass
        fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644,
                     dir_fd=self.directory)
        with os.fdopen(fd, "w") as marker:
            marker.write(text)

    def forget_ended(self) -> None:
        """Remove JOB.ended (an earlier attempt's): this attempt's log goes on."""
        try:
            os.unlink(ended_marker(self.path).name, dir_fd=self.directory)
        except FileNotFoundError:
            pass

    def close(self) -> None:
        for fd in (self.fd, self.directory):
            os.close(fd)


def _logs_directory(workdir: int) -> int:
    """WORKDIR/logs, made if missing; a link or file the build put in its place is replaced, never followed."""
    try:
        return open_directory_under(workdir, "logs", create=True)
    except OSError as error:
        if error.errno not in (errno.ENOTDIR, errno.ELOOP):
            raise
    os.unlink("logs", dir_fd=workdir)
    return open_directory_under(workdir, "logs", create=True)


def _open_regular_for_append(directory: int, name: str) -> int:
    """The log's descriptor: the regular file NAME, created if missing; a link or special file there is replaced."""
    try:
        fd = os.open(name, _APPEND, 0o644, dir_fd=directory)
    except OSError as error:
        if error.errno != errno.ELOOP:
            raise
    else:
        if stat.S_ISREG(os.fstat(fd).st_mode):
            os.set_blocking(fd, True)
            return fd
        os.close(fd)
    os.unlink(name, dir_fd=directory)
    fd = os.open(name, _APPEND | os.O_EXCL, 0o644, dir_fd=directory)
    os.set_blocking(fd, True)
    return fd


class _SnapshotReader(io.RawIOBase):
    """The first `size` bytes of a file, read with pread: its own position, whatever else reads or appends."""

    def __init__(self, fd: int, size: int):
        super().__init__()
        self.fd, self.size, self.position = os.dup(fd), size, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        data = os.pread(self.fd, max(0, min(len(buffer), self.size - self.position)), self.position)
        buffer[:len(data)] = data
        self.position += len(data)
        return len(data)

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self.position, io.SEEK_END: self.size}[whence]
        self.position = max(0, base + offset)
        return self.position

    def tell(self) -> int:
        return self.position

    def close(self) -> None:
        if not self.closed:
            os.close(self.fd)
        super().close()


class LogCopier:
    """Copies a pipe into a log file, line by line with times, in a thread of its own."""

    def __init__(self, pipe_fd: int, log: "BuildLog | Path", *, max_bytes: int | None = None,
                 mask: SecretMask | None = None):
        self.pipe_fd, self.log = pipe_fd, log
        self.log_path = log.path if isinstance(log, BuildLog) else Path(log)
        self.max_bytes, self.budget, self.mask = max_bytes, None, mask or SecretMask()
        self.thread = threading.Thread(target=self._copy, name=f"log copier {self.log_path.name}", daemon=True)

    def start(self) -> "LogCopier":
        self.thread.start()
        return self

    def join(self, timeout: float | None = None) -> bool:
        """Whether the copier reached EOF (a daemon the build left behind may hold the pipe open)."""
        self.thread.join(timeout)
        return not self.thread.is_alive()

    def cut_note(self) -> str:
        """What to add to the job's reason when its log was cut ("" when it was not)."""
        return f"; its log was cut at {self.max_bytes} bytes" if self.budget and self.budget.cut else ""

    def _copy(self) -> None:
        with self.log.appender() if isinstance(self.log, BuildLog) else open(self.log_path, "ab") as raw:
            log = self.budget = LogBudget(raw, self.max_bytes)
            partial = b""
            while chunk := _read(self.pipe_fd):
                if not log.cut:  # past the cut the output is only drained, so the build never blocks
                    partial = _write_lines(log, partial + chunk, self.mask)
            if partial:
                log.write(line_time() + _text(self.mask.line(partial)) + b"\n")
                log.flush()
        os.close(self.pipe_fd)


class LogBudget:
    """A log file that takes output up to `limit` bytes in all, then one line that says it was cut, then nothing."""

    def __init__(self, file, limit: int | None):
        self.file, self.limit, self.cut = file, limit, False
        self.size = os.fstat(file.fileno()).st_size  # an earlier attempt's log goes on in the same file

    def write(self, data: bytes) -> None:
        if self.cut:
            return
        if self.limit is None or self.size + len(data) <= self.limit - CUT_LINE_ROOM:
            self.file.write(data)
            self.size += len(data)
            return
        room = max(0, self.limit - CUT_LINE_ROOM - self.size)
        kept = data[:data.rfind(b"\n", 0, room) + 1]  # whole lines only
        notice = line_time() + b"trivialci: the log was cut here: it reached its limit of %d bytes " \
                               b"(the worker's --max-log-bytes); the build went on\n" % self.limit
        self.file.write(kept + notice[:max(0, self.limit - self.size - len(kept))])
        self.size += len(kept) + len(notice)
        self.cut = True

    def flush(self) -> None:
        self.file.flush()


def _read(fd: int) -> bytes:
    try:
        return os.read(fd, READ_SIZE)
    except OSError:  # the pipe is gone: nothing more will come
        return b""


def _write_lines(log, data: bytes, mask: SecretMask) -> bytes:
    """Write the complete lines of `data`, each with its time, masked; what is left (no newline yet)."""
    *lines, rest = data.split(b"\n")
    if lines:
        stamp = line_time()
        log.write(b"".join(stamp + _text(mask.line(line)) + b"\n" for line in lines))
        log.flush()
    if len(rest) > READ_SIZE:  # a line that never ends (a progress bar): show it in pieces
        piece, rest = mask.split(rest)
        log.write(line_time() + _text(piece) + b"\n")
        log.flush()
    return rest


def _text(line: bytes) -> bytes:
    return line.decode("utf-8", "replace").encode("utf-8")
