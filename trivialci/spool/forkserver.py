"""The fork server, as a node uses it: TYPE.py scripts started in a millisecond.

A spawned `python TYPE.py` spends 15-20 ms starting an interpreter and importing
TrivialCi before its first line, and ~50 ms of CPU in all. Each node therefore
keeps one helper process (zygote.py), started as a fresh interpreter when the
node opens, that has imported all that once and forks a child per TYPE.py
event. The child is the node's own child (sibling.py), set up as a spawned
script is (scriptmain.py), so everything after the start is unchanged: the
node watches it on a pidfd, reads its exit status, signals its group on a
timeout, and finds it by its marks after a crash.

The wire: a stream socket pair; a frame is a 4-byte big-endian length and a
JSON object. A request carries the script's stdin and log descriptors
(SCM_RIGHTS) with its first bytes.

    node -> server   {"script": PATH, "argument": BASE64, "env": {...}, "cwd": DIR}   + fds [stdin, log]
    server -> node   {"ready": PID, "modules": N}  once, when it has imported what it preloads
                     then one answer per request: {"pid": PID}   the script runs as the node's child PID
                                                  {"spawn": WHY} spawn this one as usual
                                                  {"restart": WHY} spawn it, and start a new server (it exits)

Whenever the server is not there (starting, dead, stale, hung for
REPLY_SECONDS), the node spawns the script as it always did. A server that
dies is started again at once, then, if it keeps dying young, after 1, 2,
4 ... 60 s. Executable non-Python scripts are always spawned. Off with
--no-fork-server or TRIVIALCI_FORK_SERVER=off.
"""

import array
import json
import logging
import os
import select
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

log = logging.getLogger("trivialci")

ENV = "TRIVIALCI_FORK_SERVER"
OFF_VALUES = {"0", "off", "no", "false"}
SLOT_ENV, SLOT_BYTES = "TRIVIALCI_FORK_SLOT", 8192  # room for TRIVIALCI_EVENT_ID and TRIVIALCI_NODE_DIR
TITLE_BYTES = 4096  # room for a child's command line, as ps shows it
REPLY_SECONDS = 5.0
FIRST_READY_SECONDS = 3.0  # the first script waits this long for the first server; later ones never wait
BACKOFF = (0.0, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 60.0)
YOUNG_SECONDS = 10.0  # a server that dies younger than this is restarted later each time
GIVE_UP_AFTER = 3  # servers in a row that died before they were ready
MAX_FRAME = 1 << 24
START_CODE = ("import sys; bare = set(sys.modules); sys.flags.safe_path or sys.path.pop(0); "
              "from trivialci.spool.zygote import main; main(bare)")


def wanted(env=None) -> bool:
    """Whether the fork server is on: unless TRIVIALCI_FORK_SERVER is 0, off, no or false."""
    return (env if env is not None else os.environ).get(ENV, "").strip().lower() not in OFF_VALUES


# --- the wire ---------------------------------------------------------------

def send_frame(sock: socket.socket, message: dict, fds: list[int] = ()) -> None:
    data = json.dumps(message).encode()
    frame = struct.pack(">I", len(data)) + data
    ancillary = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))] if fds else []
    sent = sock.sendmsg([frame], ancillary)
    if sent < len(frame):
        sock.sendall(frame[sent:])


def receive_frame(sock: socket.socket) -> tuple[dict, list[int]] | None:
    """The next frame and the descriptors that came with it; None at the end of the stream."""
    head, fds, _, _ = socket.recv_fds(sock, 4, 4)
    if not head:
        return None
    try:
        head += _receive_exactly(sock, 4 - len(head))
        (length,) = struct.unpack(">I", head)
        if length > MAX_FRAME:
            raise ValueError(f"a frame of {length} bytes")
        message = json.loads(_receive_exactly(sock, length))
        if not isinstance(message, dict):
            raise ValueError("a frame that is not a JSON object")
        return message, fds
    except BaseException:
        for fd in fds:
            os.close(fd)
        raise


def _receive_exactly(sock: socket.socket, size: int) -> bytes:
    chunks = []
    while size > 0:
        chunk = sock.recv(min(size, 1 << 20))
        if not chunk:
            raise ConnectionError("the stream ended inside a frame")
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


# --- the node's side ----------------------------------------------------------

class ForkedChild:
    """A script the fork server started as this process's own child: waited for as a Popen is."""

    def __init__(self, pid: int):
        self.pid = pid
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            self._reap(os.WNOHANG)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            if deadline is None:
                self._reap(0)
            elif time.monotonic() >= deadline:
                raise subprocess.TimeoutExpired(f"pid {self.pid}", timeout)
            else:
                time.sleep(0.01)
        return self.returncode

    def _reap(self, flags: int) -> None:
        try:
            pid, status = os.waitpid(self.pid, flags)
        except ChildProcessError:  # reaped elsewhere: as Popen does, take it as ended
            self.returncode = 0 if self.returncode is None else self.returncode
            return
        if pid == self.pid:
            self.returncode = os.waitstatus_to_exitcode(status)


class ForkServer:
    """A node's fork server: started with `start`, asked by `launch`, replaced when it dies or goes stale."""

    def __init__(self, pipeline: Path, env: dict, node: str, enabled: bool = True):
        self.pipeline, self.env, self.node, self.enabled = Path(pipeline), dict(env), node, enabled
        self.process: subprocess.Popen | None = None
        self.sock: socket.socket | None = None
        self.ready, self.ever_ready = False, False
        self.started_at = self.restart_at = 0.0
        self.failures = self.stillborn = 0
        self._said: set[str] = set()

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def start(self) -> None:
        """Start the server if there is none (and its backoff is over); it says when it is ready."""
        if not self.enabled or self.process is not None or time.monotonic() < self.restart_at:
            return
        if not any(self.pipeline.glob("*.py")):
            return  # a pipeline of executables only: nothing to fork (a TYPE.py added later starts it)
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self.process = subprocess.Popen(
                [sys.executable, "-c", START_CODE, str(theirs.fileno()), str(self.pipeline), "." * TITLE_BYTES],
                pass_fds=[theirs.fileno()], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, cwd="/",
                env={**self.env, "PYTHONUNBUFFERED": "1", SLOT_ENV: "." * SLOT_BYTES}, start_new_session=True)
        except OSError as error:
            ours.close()
            self._failed(f"could not be started: {error}")
            return
        finally:
            theirs.close()
        ours.settimeout(REPLY_SECONDS)
        self.sock, self.ready, self.started_at = ours, False, time.monotonic()

    def launch(self, script: Path, argument: str, stdin_fd: int, log_fd: int, env: dict, cwd) -> ForkedChild | None:
        """The script forked as this process's child, or None: then spawn it."""
        if script.suffix != ".py" or not self._usable():
            return None
        request = {"script": str(script), "argument": argument, "env": env, "cwd": str(cwd)}
        try:
            send_frame(self.sock, request, [stdin_fd, log_fd])
            reply, fds = receive_frame(self.sock) or ({}, [])
        except (OSError, ValueError) as error:
            self._failed(f"did not answer ({error})")
            return None
        if isinstance(reply.get("pid"), int) and reply["pid"] > 0:
            return ForkedChild(reply["pid"])
        if "restart" in reply:
            self._replace(str(reply["restart"]))
        elif "spawn" in reply:
            self._say_once(f"{self.node}: the fork server spawns {script.name} as usual: {reply['spawn']}")
        else:
            self._failed("closed its socket" if not reply else f"answered {reply!r}")
        return None

    def close(self) -> None:
        """Stop the server: it exits when its socket closes (then KILL after a second)."""
        if self.sock is not None:
            self.sock.close()
            self.sock = None
        if self.process is not None:
            try:
                self.process.wait(1.0)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            self.process = None
        self.ready = False

    # --- keeping it there ---------------------------------------------------

    def _usable(self) -> bool:
        if not self.enabled:
            return False
        if self.process is not None and self.process.poll() is not None:
            self._failed(f"exited with status {self.process.returncode}")
        self.start()
        if self.process is not None and not self.ready:
            self._check_ready(0.0 if self.ever_ready or self.stillborn else FIRST_READY_SECONDS)
        return self.ready

    def _check_ready(self, wait: float) -> None:
        try:
            if not select.select([self.sock], [], [], wait)[0]:
                return  # still importing: this script is spawned
            message, _ = receive_frame(self.sock) or ({}, [])
        except (OSError, ValueError) as error:
            self._failed(f"did not start ({error})")
            return
        if "ready" in message:
            self.ready, self.ever_ready, self.stillborn = True, True, 0
            log.info("%s: fork server pid %d ready in %.0f ms (%d modules imported)", self.node, self.process.pid,
                     (time.monotonic() - self.started_at) * 1e3, message.get("modules", 0))
        elif "unusable" in message:
            log.warning("%s: no fork server: %s; scripts are spawned", self.node, message["unusable"])
            self.close()
            self.enabled = False
        else:
            self._failed(f"said {message!r} instead of ready" if message else "exited before it was ready")

    def _failed(self, why: str) -> None:
        """The server is gone or useless: kill it, and start another now or after the backoff."""
        pid, was_ready = self.pid, self.ready
        self._kill()
        young = time.monotonic() - self.started_at < YOUNG_SECONDS
        self.failures = min(self.failures + 1, len(BACKOFF) - 1) if young else 0
        self.stillborn = 0 if was_ready else self.stillborn + 1
        if self.stillborn >= GIVE_UP_AFTER:
            log.warning("%s: the fork server (pid %s) %s, %d times in a row before it was ready; "
                        "scripts are spawned from now on", self.node, pid, why, self.stillborn)
            self.enabled = False
            return
        self.restart_at = time.monotonic() + BACKOFF[self.failures]
        log.warning("%s: the fork server (pid %s) %s; another starts in %g s, scripts are spawned meanwhile",
                    self.node, pid, why, BACKOFF[self.failures])
        self.start()

    def _replace(self, why: str) -> None:
        log.info("%s: restarting the fork server: %s", self.node, why)
        self.close()
        self.restart_at = 0.0
        self.start()

    def _kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
        self.close()

    def _say_once(self, message: str) -> None:
        if message not in self._said:
            self._said.add(message)
            log.warning("%s", message)
