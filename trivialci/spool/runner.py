"""The runner: one script for one claimed event.

The script for TYPE is, in the node's pipeline directory, TYPE.py (run with
the interpreter that runs TrivialCi, so it can `import trivialci`) or else an
executable TYPE or TYPE.* with a shebang. It gets the event as base64 JSON in
argv[1] and as JSON on stdin (the claimed file itself, no pipe), its stdout and
stderr go straight into the event's .log file, and it leads its own process
group, so that a timeout can stop everything it started. A node's fork server
(forkserver.py), when it has one, starts TYPE.py scripts the same way, faster.
"""

import base64
import errno
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from . import processes
from .claim import Claim, open_claimed
from .event import BadEvent
from .forkserver import ForkedChild, ForkServer
from .record import sync_log

MAX_TIMEOUT = 7 * 86400.0  # the most an event's "_timeout" may ask for

EDITOR_LEFTOVERS = ("~", ".swp", ".swo", ".bak", ".orig", ".rej", ".tmp")
# exec errors that are the script's own fault (its file or #! line); others (EAGAIN, ENOMEM) pass
SCRIPT_FAULTS = {errno.ENOENT, errno.EACCES, errno.ENOEXEC, errno.ENOTDIR, errno.ELOOP, errno.EPERM, errno.ETXTBSY}


def find_script(pipeline: Path, event_type: str) -> Path | None:
    """The script that handles `event_type`, or None when the pipeline has none."""
    python_script = pipeline / f"{event_type}.py"
    if python_script.is_file():
        return python_script
    for candidate in [pipeline / event_type, *sorted(pipeline.glob(f"{event_type}.*"))]:
        if _is_runnable(candidate):
            return candidate
    return None


def _is_runnable(path: Path) -> bool:
    if path.name.endswith(EDITOR_LEFTOVERS) or path.name.startswith("."):
        return False
    return path.is_file() and os.access(path, os.X_OK)


def command_for(script: Path, body: bytes) -> list[str]:
    argument = base64.b64encode(body).decode("ascii")
    if script.suffix == ".py":
        return [sys.executable, str(script), argument]
    return [str(script), argument]


@dataclass
class Run:
    """A script that is running, or has just exited, for one claim."""

    claim: Claim
    process: subprocess.Popen | ForkedChild
    script: Path
    log_fd: int
    timeout: float
    started: float = field(default_factory=time.time)
    started_monotonic: float = field(default_factory=time.monotonic)
    pidfd: int | None = None
    terminated_at: float | None = None  # monotonic time of the SIGTERM after a timeout or stop
    killed: bool = False
    stopped_by_node: bool = False

    @property
    def deadline(self) -> float:
        return self.started_monotonic + self.timeout

    def exited(self) -> bool:
        return self.process.poll() is not None

    def signal(self, sig: int) -> None:
        node_dir = str(self.claim.node_dir.root)
        processes.signal_all(self.process.pid, self.claim.id, node_dir, sig)

    def leftovers(self) -> bool:
        return processes.anything_left(self.process.pid, self.claim.id, str(self.claim.node_dir.root))


def start(claim: Claim, script: Path, stdin_fd: int, body: bytes, env: dict, log_fd: int, timeout: float,
          fork_server: ForkServer | None = None) -> Run:
    """Start `script` for `claim` (forked by `fork_server` if it can); stdout and stderr go to `log_fd`."""
    command = command_for(script, body)
    process = fork_server and fork_server.launch(script, command[-1], stdin_fd, log_fd, env, claim.node_dir.root)
    process = process or subprocess.Popen(
        command,
        stdin=stdin_fd,
        stdout=log_fd,
        stderr=log_fd,
        cwd=claim.node_dir.root,
        env=env,
        start_new_session=True,
        close_fds=True,
    )
    run = Run(claim, process, script, log_fd, timeout)
    run.pidfd = _pidfd(process.pid)
    return run


def _pidfd(pid: int) -> int | None:
    """A descriptor that becomes readable when the process exits (Linux 5.3+), else None."""
    try:
        return os.pidfd_open(pid)
    except (AttributeError, OSError):
        return None


def open_log(claim: Claim) -> int:
    """The event's log, opened for appending (a retry adds to what the last attempt wrote)."""
    fd = os.open(claim.log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o644)
    if claim.attempt > 1:
        note = f"--- trivialci: attempt {claim.attempt}; the previous attempt was interrupted ---\n"
        os.write(fd, note.encode())
    return fd


def script_environment(base: dict, claim: Claim, extra: dict) -> dict:
    """The environment of a script: the node's own, plus the protocol's variables."""
    node_dir = claim.node_dir
    env = dict(base)
    env.update(extra)
    env.update({
        "TRIVIALCI_EVENT": claim.type,
        "TRIVIALCI_EVENT_ID": claim.id,
        "TRIVIALCI_EVENT_FILE": str(claim.path),
        "TRIVIALCI_ATTEMPT": str(claim.attempt),
        "TRIVIALCI_LOG": str(claim.log_path),
        "TRIVIALCI_SPOOL": str(node_dir.spool),
        "TRIVIALCI_NODE": node_dir.node,
        "TRIVIALCI_NODE_DIR": str(node_dir.root),
        "PYTHONUNBUFFERED": "1",
    })
    return env


def run_claim(taken: Claim, pipeline: Path, env: dict, default_timeout: float,
              fork_server: ForkServer | None = None) -> Run:
    """Start the script for a claimed event; BadEvent when there is none or it cannot run (refuse the event),
    OSError for trouble of this machine (the event waits in work/)."""
    stdin_fd, body, payload = open_claimed(taken)
    try:
        script = find_script(pipeline, taken.type)
        if script is None:
            raise BadEvent(f"no script for event type {taken.type!r} in {pipeline}: "
                           f"add {taken.type}.py or an executable {taken.type} there")
        timeout = event_timeout(payload, default_timeout)
        return _start_logged(taken, script, stdin_fd, body, script_environment(env, taken, {}), timeout, fork_server)
    finally:
        os.close(stdin_fd)


def _start_logged(taken: Claim, script: Path, stdin_fd: int, body: bytes, env: dict, timeout: float,
                  fork_server: ForkServer | None) -> Run:
    log_fd = open_log(taken)
    try:
        return start(taken, script, stdin_fd, body, env, log_fd, timeout, fork_server)
    except OSError as error:
        if error.errno not in SCRIPT_FAULTS:
            os.close(log_fd)
            raise  # fork or memory trouble: the event waits in work/ and is retried
        os.write(log_fd, f"trivialci: cannot run {script}: {error}\n".encode())
        sync_log(log_fd)
        raise BadEvent(f"cannot run {script}: {error.strerror or error} (is its #! line right?)") from None
    except BaseException:
        os.close(log_fd)
        raise


def event_timeout(payload: dict, default: float) -> float:
    """How long the script may run: the event's "_timeout", or the node's --timeout."""
    value = payload.get("_timeout", default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= MAX_TIMEOUT:
        raise BadEvent(f"\"_timeout\" must be a number of seconds between 0 and {MAX_TIMEOUT:g}, not {value!r}")
    return float(value)
