"""The fork server's own process: import once, then fork one child per TYPE.py event.

A node starts it as a fresh interpreter (never a fork of the node, whose other
threads could hold locks in the copy), with one end of a socket pair:

    python -c "…zygote.main(…)" SOCKET_FD PIPELINE_DIR [argv slot]    (env: + TRIVIALCI_FORK_SLOT)

It imports TrivialCi and what the pipeline's scripts import from TrivialCi
and the standard library (never a module of the pipeline directory, which is
not on its sys.path), freezes what it imported out of the garbage collector's
way, says {"ready": PID, ...} and serves one request at a time (the frames of
forkserver.py). For each it forks a sibling (sibling.py: the node's own child)
that becomes the script (scriptmain.py), and answers {"pid": PID}. It answers
{"spawn": why} instead when a fork could not be the script's twin, and the
node spawns it: the request's PYTHON* variables differ from the server's, the
pipeline directory has a module that shadows one the server imported, or the
event's marks do not fit the slot. It answers {"restart": why} and exits when
it is stale: the script is not in the pipeline directory it was started for (a
new --pipeline git+… revision), or a TrivialCi file it imported changed on
disk (a reinstall; looked at once a second at most, while it waits). It exits when the node closes its end. It waits for no
child: they are the node's.
"""

import ast
import gc
import importlib
import json
import os
import select
import signal
import socket
import sys
import threading
import time
from pathlib import Path

from . import forkserver, scriptmain
from .sibling import Cloner, Unsupported

LOOK_SECONDS = 1.0  # how often, at most, it looks whether TrivialCi's files changed


class Zygote:
    def __init__(self, sock: socket.socket, pipeline: str, bare_modules: set[str]):
        self.sock = sock
        self.pipeline = os.path.realpath(pipeline)
        self.bare = {name.partition(".")[0] for name in bare_modules}
        self.cloner = Cloner()
        self.python_env = _python_variables(os.environ)
        self.preloaded = preload(Path(self.pipeline))
        if threading.active_count() > 1:
            raise Unsupported(0, "a module it imported started a thread, and a fork copies no thread")
        self.fingerprint, self.changed, self.looked_at = fingerprint(), "", time.monotonic()
        self.slots = reserved_slots()
        self._pipeline_seen: tuple | None = None
        self._shadowing = ""

    def serve(self) -> None:
        gc.collect()
        gc.freeze()  # children then neither scan nor copy-on-write what was imported here
        forkserver.send_frame(self.sock, {"ready": os.getpid(), "modules": len(self.preloaded)})
        while (received := self.next_request()) is not None:
            request, fds = received
            try:
                reply = self.handle(request, fds)
            finally:
                for fd in fds:
                    os.close(fd)
            forkserver.send_frame(self.sock, reply)
            if "restart" in reply:
                return

    def next_request(self) -> tuple[dict, list[int]] | None:
        """The next request; None when the node closed its end (or went away). Its files are looked at
        while it waits, at most once a second, not while a script waits to start."""
        try:
            while not select.select([self.sock], [], [], self._until_next_look())[0]:
                self._look_at_files()
            return forkserver.receive_frame(self.sock)
        except ConnectionError:
            return None

    def _until_next_look(self) -> float:
        wait = self.looked_at + LOOK_SECONDS - time.monotonic()
        if wait <= 0:
            self._look_at_files()
            wait = LOOK_SECONDS
        return wait

    def _look_at_files(self) -> None:
        self.looked_at = time.monotonic()
        if not self.changed and fingerprint() != self.fingerprint:
            self.changed = "TrivialCi's files changed on disk (reinstalled?)"

    def handle(self, request: dict, fds: list[int]) -> dict:
        if len(fds) != 2:
            return {"spawn": f"a request came with {len(fds)} descriptors instead of 2"}
        stale = self.staleness(request)
        if stale:
            return {"restart": stale}
        refusal = self.refusal(request)
        if refusal:
            return {"spawn": refusal}
        try:
            return {"pid": self.fork_script(request, *fds)}
        except OSError as error:  # EAGAIN, ENOMEM: the node's own fork may still work
            return {"spawn": f"it could not be forked: {error.strerror or error}"}

    def staleness(self, request: dict) -> str:
        directory = os.path.realpath(os.path.dirname(request["script"]))
        if directory != self.pipeline:
            return f"the pipeline is now {directory}, not {self.pipeline}"
        return self.changed

    def refusal(self, request: dict) -> str:
        if os.path.dirname(os.path.realpath(request["script"])) != self.pipeline:
            return "it is a link to a file in another directory (its own sys.path[0])"
        if _python_variables(request["env"]) != self.python_env:
            return "its PYTHON* environment variables differ from the fork server's"
        if not self.slots.marks_fit(request["env"]):
            return "its marks (event id, node directory) do not fit the fork server's slot"
        return self.shadowing()

    def shadowing(self) -> str:
        """Why a fork would not import what a spawned script imports: a pipeline module shadows a preloaded one."""
        try:
            seen = os.stat(self.pipeline)
        except OSError:
            return ""
        if (seen.st_ino, seen.st_mtime_ns) != self._pipeline_seen:
            self._pipeline_seen = (seen.st_ino, seen.st_mtime_ns)
            loaded = {name.partition(".")[0] for name in sys.modules} - self.bare
            shadows = sorted(local_modules(Path(self.pipeline)) & loaded)
            self._shadowing = f"the pipeline's own {', '.join(shadows)} shadows a module the fork server imported" \
                if shadows else ""
        return self._shadowing

    def fork_script(self, request: dict, stdin_fd: int, log_fd: int) -> int:
        request = {**request, "directory": self.pipeline}
        blocked = signal.pthread_sigmask(signal.SIG_BLOCK, signal.valid_signals())
        try:
            pid = self.cloner.fork()
            if pid == 0:
                try:
                    self.sock.close()
                    scriptmain.become(request, stdin_fd, log_fd, self.slots)
                finally:
                    os._exit(scriptmain.SETUP_FAILED)  # never back into the server's loop
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
        return pid


def preload(pipeline: Path) -> list[str]:
    """Import TrivialCi and what the pipeline's scripts import from it and the standard library."""
    imported = []
    for name in ["trivialci", *sorted(imports_of(pipeline))]:
        try:
            importlib.import_module(name)
            imported.append(name)
        except Exception:  # the script meets the same error in its own child, and says it in its log
            continue
    return imported


def imports_of(pipeline: Path) -> set[str]:
    """Absolute imports of the pipeline's scripts that are TrivialCi's or the standard library's."""
    local, names = local_modules(pipeline), set()
    for script in sorted(pipeline.glob("*.py")):
        try:
            tree = ast.parse(script.read_bytes(), str(script))
        except (OSError, SyntaxError, ValueError):
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module)
                names.update(f"{node.module}.{alias.name}" for alias in node.names if node.module == "trivialci")
    return {name for name in names if _preloadable(name.partition(".")[0], local)}


def _preloadable(top: str, local: set[str]) -> bool:
    return top not in local and (top == "trivialci" or top in sys.stdlib_module_names)


def local_modules(pipeline: Path) -> set[str]:
    """Top-level names the pipeline directory itself provides (NAME.py, NAME/, NAME.so...)."""
    try:
        entries = os.listdir(pipeline)
    except OSError:
        return set()
    return {entry.partition(".")[0] for entry in entries if not entry.startswith(".")}


def fingerprint() -> dict[str, tuple]:
    """Identity of each TrivialCi file this process imported: a reinstall or an edit changes it."""
    found = {}
    for name, module in list(sys.modules.items()):
        path = getattr(module, "__file__", None)
        if path and (name == "trivialci" or name.startswith("trivialci.")):
            try:
                info = os.stat(path)
                found[path] = (info.st_ino, info.st_size, info.st_mtime_ns)
            except OSError:
                found[path] = None
    return found


def reserved_slots() -> scriptmain.Slots:
    """Where this process's TRIVIALCI_FORK_SLOT entry and argv block are in memory (see scriptmain)."""
    try:
        fields = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
        arg_start, arg_end, env_start = int(fields[45]), int(fields[46]), int(fields[47])
        environ = Path("/proc/self/environ").read_bytes()
    except (OSError, IndexError, ValueError):
        return scriptmain.Slots(None, None)
    entry = next((e for e in environ.split(b"\0") if e.startswith(forkserver.SLOT_ENV.encode() + b"=")), None)
    at = environ.find(b"\0" + entry) + 1 if entry and not environ.startswith(entry) else 0
    marks = (env_start + at, len(entry)) if entry else None
    return scriptmain.Slots(marks, (arg_start, arg_end - arg_start) if arg_end > arg_start else None)


def _python_variables(env) -> dict:
    return {name: value for name, value in env.items() if name.startswith("PYTHON")}


def main(bare_modules: set[str]) -> None:
    """The fork server's process: argv is SOCKET_FD PIPELINE_DIR [padding]."""
    sock = socket.socket(fileno=int(sys.argv[1]))
    try:
        try:
            zygote = Zygote(sock, sys.argv[2], bare_modules)
        except OSError as error:
            forkserver.send_frame(sock, {"unusable": str(error)})
            return
        zygote.serve()
    except ConnectionError:
        return  # the node went away (or stopped before this was ready): nothing to say, nobody to say it to
