"""In a child of the fork server: become the script, as `python TYPE.py ARGUMENT` would be.

What a spawned script gets, this child gets: its own session and process group,
the event on fd 0 and the log on fds 1 and 2 (nothing else open), the node's
directory as cwd, exactly the environment the node built (os.environ), argv
[TYPE.py, base64 event], sys.path[0] the script's own directory, fresh
sys.stdin/stdout/stderr, the signal handlers of a fresh interpreter, and fresh
random state (reseeded by the interpreter's after-fork hooks). The script runs
as __main__ from its source, so modules of the pipeline directory are imported
here, fresh, and whatever the script changes dies with this process. It ends
as the interpreter ends: non-daemon threads joined, atexit handlers run, the
script's globals released, output flushed, then the exit status that
`python TYPE.py` would have had (1 with a traceback, SIGINT for an uncaught
KeyboardInterrupt, SystemExit's code).

Two things of a process image are not Python's to set after fork: the
environment and the command line that /proc shows. The fork server reserves a
slot in each (`Slots`); the child writes there its event's marks
(TRIVIALCI_EVENT_ID, TRIVIALCI_NODE_DIR, which processes.py looks for after
a crash) and its command line, so that ps and recovery see what they would
see of a spawned script.
"""

import atexit
import builtins
import ctypes
import gc
import io
import os
import signal
import sys
import threading
import types
from dataclasses import dataclass
from importlib.machinery import SourceFileLoader

MARKS = ("TRIVIALCI_EVENT_ID", "TRIVIALCI_NODE_DIR")
SETUP_FAILED = 127


@dataclass(frozen=True)
class Slots:
    """(address, length) in this process's memory of the reserved environment entry and of its argv block."""

    marks: tuple[int, int] | None
    title: tuple[int, int] | None

    def marks_fit(self, env: dict) -> bool:
        return self.marks is not None and len(_marks(env)) <= self.marks[1]

    def write(self, env: dict, argv: list[str]) -> None:
        if self.marks is not None:
            _fill(self.marks, _marks(env))
        if self.title is not None:
            _fill(self.title, b"\0".join(os.fsencode(a) for a in argv)[: self.title[1] - 1])


def _marks(env: dict) -> bytes:
    return b"\0".join(os.fsencode(f"{name}={env[name]}") for name in MARKS if name in env)


def _fill(slot: tuple[int, int], data: bytes) -> None:
    address, length = slot
    ctypes.memmove(address, data.ljust(length, b"\0"), length)


def become(request: dict, stdin_fd: int, log_fd: int, slots: Slots) -> None:
    """Set this child up as the script of `request`, run it, and exit with its status; never returns."""
    script = request["script"]
    argv = [script, request["argument"]]
    try:
        _own_session_and_files(stdin_fd, log_fd, request["cwd"])
        _environment(request["env"])
        slots.write(request["env"], [sys.executable, *argv])
        _interpreter_state(argv, request["directory"])
        signal.pthread_sigmask(signal.SIG_SETMASK, set())
    except BaseException as error:  # the log may not be fd 2 yet: say it where it is
        message = f"trivialci: the fork server could not start {script}: {error}\n"
        os.write(log_fd if log_fd > 2 else 2, message.encode())
        os._exit(SETUP_FAILED)
    _exit_as_interpreter(run_as_main(script))


def _own_session_and_files(stdin_fd: int, log_fd: int, cwd: str) -> None:
    os.setsid()
    os.dup2(stdin_fd, 0)
    os.dup2(log_fd, 1)
    os.dup2(log_fd, 2)
    _close_from(3)
    os.chdir(cwd)


def _close_from(lowest: int) -> None:
    """Close every descriptor from `lowest` on: the open ones, read from /proc (closing all possible
    numbers one by one costs milliseconds where the limit is high)."""
    try:
        open_fds = [int(name) for name in os.listdir("/proc/self/fd")]
    except OSError:
        os.closerange(lowest, max(os.sysconf("SC_OPEN_MAX"), 65536))
        return
    for fd in open_fds:
        if fd >= lowest:
            try:
                os.close(fd)
            except OSError:
                pass  # the listing's own descriptor, gone already


def _environment(env: dict) -> None:
    """os.environ becomes `env`, changing only what differs (most of it is the server's own)."""
    for name in [name for name in os.environ if name not in env]:
        del os.environ[name]
    for name, value in env.items():
        if os.environ.get(name) != value:
            os.environ[name] = value


def _interpreter_state(argv: list[str], directory: str) -> None:
    sys.argv = list(argv)
    sys.orig_argv = [sys.executable, *argv]
    if not sys.flags.safe_path:  # PYTHONSAFEPATH: python TYPE.py puts no directory first either
        sys.path.insert(0, directory)
    sys.stdin = sys.__stdin__ = _stream(0, "r", "<stdin>", sys.__stdin__)
    sys.stdout = sys.__stdout__ = _stream(1, "w", "<stdout>", sys.__stdout__)
    sys.stderr = sys.__stderr__ = _stream(2, "w", "<stderr>", sys.__stderr__)
    signal.set_wakeup_fd(-1)


def _stream(fd: int, mode: str, name: str, like) -> io.TextIOWrapper:
    """A standard stream on `fd` made as the interpreter makes it at start (its encoding, buffering)."""
    raw = io.FileIO(fd, mode + "b", closefd=False)
    raw.name = name
    unbuffered = mode == "w" and isinstance(like.buffer, io.FileIO)  # PYTHONUNBUFFERED
    buffer = raw if unbuffered else (io.BufferedWriter(raw) if mode == "w" else io.BufferedReader(raw))
    stream = io.TextIOWrapper(buffer, encoding=like.encoding, errors=like.errors, newline="\n",
                              line_buffering=like.line_buffering, write_through=like.write_through)
    stream.mode = mode
    return stream


def run_as_main(path: str) -> int:
    """Run the file at `path` as __main__; the status the interpreter would exit with."""
    main = types.ModuleType("__main__")
    main.__file__, main.__cached__, main.__builtins__ = path, None, builtins
    main.__loader__ = SourceFileLoader("__main__", path)
    sys.modules["__main__"] = main
    try:
        with open(path, "rb") as source_file:
            source = source_file.read()
    except OSError as error:
        sys.stderr.write(f"{sys.executable}: can't open file {path!r}: [Errno {error.errno}] {error.strerror}\n")
        return 2
    try:
        exec(compile(source, path, "exec", dont_inherit=True), main.__dict__)
    except SystemExit as exit_request:
        return exit_status(exit_request)
    except BaseException as error:
        _report(error, path)
        return -signal.SIGINT if isinstance(error, KeyboardInterrupt) else 1
    return 0


def exit_status(exit_request: SystemExit) -> int:
    """As the interpreter reads SystemExit: None is 0, an int is itself, anything else is printed and is 1."""
    code = exit_request.code
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    sys.stderr.write(f"{code}\n")
    return 1


def _report(error: BaseException, path: str) -> None:
    """The traceback the interpreter prints: from the script's own frames on."""
    trace = error.__traceback__
    while trace is not None and trace.tb_frame.f_code.co_filename != path:
        trace = trace.tb_next
    sys.excepthook(type(error), error.with_traceback(trace), trace)


def _exit_as_interpreter(status: int) -> None:
    """Join threads, run atexit, release the script's globals, flush, and exit (by SIGINT if it ended so)."""
    try:
        threading._shutdown()
    except BaseException as error:  # e.g. a second Ctrl-C while joining
        _report(error, "")
    atexit._run_exitfuncs()
    sys.modules["__main__"].__dict__.clear()
    gc.collect()
    status = _flush(status)
    if status == -signal.SIGINT:
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGINT)
        status = 128 + signal.SIGINT
    os._exit(status)


def _flush(status: int) -> int:
    """Output that cannot be written makes the status 120, as in the interpreter."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError, AttributeError):
            status = 120 if status == 0 else status
    return status
