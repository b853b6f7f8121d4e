"""`trivialci up`: the whole CI for some repositories on this machine, on defaults.

A hub (its boot_worker script starts local workers as jobs need them) and a
gitwatcher per repository, as child processes in one tree. With --webhook the
hub also takes forge webhooks, and the gitwatchers poll only every
SAFETY_NET_SECONDS, to catch a delivery the forge lost. It runs until SIGINT or SIGTERM,
then stops the gitwatcher, the hub and the workers the hub started on this
host, and waits for them: nothing is left running.

Defaults (each can be given instead):
    spool      $XDG_DATA_HOME/trivialci/spool   (~/.local/share/trivialci/spool)
    store      file://$XDG_DATA_HOME/trivialci/store
    workdir    $XDG_CACHE_HOME/trivialci        (~/.cache/trivialci)
"""

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from .spool.heartbeat import read_heartbeat
from .spool.layout import worker_dir, worker_names

TICK_SECONDS = 10.0  # lost workers are noticed within LOST_AFTER + this; each tick is a file in done/
WATCH_SECONDS = 2.0
SAFETY_NET_SECONDS = 300.0
# Only the hub reads these (and removes them from its own environment): the gitwatchers never get them.
SECRET_NAMES = ("TRIVIALCI_WEBHOOK_SECRET", "TRIVIALCI_GITHUB_TOKEN", "TRIVIALCI_GITEA_TOKEN", "TRIVIALCI_GITLAB_TOKEN")


def default_paths() -> dict:
    data = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share") / "trivialci"
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "trivialci"
    return {"spool": data / "spool", "store": f"file://{data / 'store'}", "workdir": cache}


def start_tree(repos, spool: Path, store: str, workdir: Path, pipeline: Path, ui: str | None = None,
               hub_args=(), poll: float = WATCH_SECONDS) -> list[subprocess.Popen]:
    """The hub (serving its web UI on `ui`, HOST:PORT, if given; `hub_args` added) and a gitwatcher for each of
    `repos` (one repository as a string works too), as this process's children."""
    trivialci = [sys.executable, "-m", "trivialci"]
    hub = subprocess.Popen([*trivialci, "hub", "--spool", str(spool), "--store", store, "--workdir",
                            str(workdir / "hub"), "--tick", str(TICK_SECONDS), "--pipeline", str(pipeline),
                            *(["--ui", ui] if ui else []), *hub_args])
    environment = {name: value for name, value in os.environ.items() if name not in SECRET_NAMES}
    watchers = [subprocess.Popen([*trivialci, "gitwatcher", "--spool", str(spool), "--repo", repo,
                                  "--interval", str(poll)], env=environment)
                for repo in ([repos] if isinstance(repos, str) else repos)]
    return [*watchers, hub]


def wait_for_signal(children: list[subprocess.Popen]) -> int:
    """Sleep until SIGINT/SIGTERM, or until a child dies (its status, to exit with)."""
    stop = []
    previous = {sig: signal.signal(sig, lambda signum, frame: stop.append(signum))
                for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        while not stop:
            for child in children:
                if child.poll() is not None:
                    return child.returncode or 1
            signal.sigtimedwait([signal.SIGCHLD], 0.5) if hasattr(signal, "sigtimedwait") else time.sleep(0.5)
        return 0
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def stop_tree(children: list[subprocess.Popen], spool: Path, grace: float = 15.0) -> None:
    """SIGTERM to the gitwatcher, the hub, then the local workers; wait; SIGKILL what is left."""
    for child in children:
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
    workers = local_worker_pids(spool)
    for pid in workers:
        _signal(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    for child in children:
        try:
            child.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
    _wait_for_pids(workers, deadline)


def local_worker_pids(spool: Path) -> list[int]:
    """Pids of the workers whose heartbeat says they run on this host."""
    pids = []
    for name in worker_names(spool):
        beat = read_heartbeat(worker_dir(spool, name).heartbeat) or {}
        if beat.get("host") == socket.gethostname() and isinstance(beat.get("pid"), int):
            pids.append(beat["pid"])
    return pids


def _wait_for_pids(pids: list[int], deadline: float) -> None:
    while pids and time.monotonic() < deadline:
        pids = [pid for pid in pids if _signal(pid, 0)]
        time.sleep(0.1)  # not our children: there is nothing to wait on but their pids
    for pid in pids:
        _signal(pid, signal.SIGKILL)


def _signal(pid: int, sig: int) -> bool:
    try:
        os.kill(pid, sig)
        return True
    except (ProcessLookupError, PermissionError):
        return False
