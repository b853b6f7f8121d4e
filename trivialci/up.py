"""`trivialci up`: the whole CI for some repositories on this machine, on defaults.

A hub (its boot_worker script starts local workers as jobs need them) and a
gitwatcher per repository, as child processes in one tree. With --webhook the
hub also takes forge webhooks, and the gitwatchers poll only every
SAFETY_NET_SECONDS, to catch a delivery the forge lost. It runs until SIGINT or SIGTERM,
then stops the gitwatcher, the hub and the workers the hub started on this
host, and waits for them: nothing is left running.

Up signals only what it started. Its children get TRIVIALCI_UP=PID.TICKS (this
process's pid and start time) in their environment, which the hub passes on to
the workers it boots; at the end, a worker that a worker.json names is stopped
only if its process carries that very mark, through a pidfd taken before the
check (spool.processes.open_marked). A pid in a worker.json alone is never
signalled: not another `up`'s worker, not a process that is no worker at all.

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

from .spool import processes
from .spool.heartbeat import read_heartbeat
from .spool.layout import worker_dir, worker_names
from .web.hosts import ALLOW_HOSTS_ENV

TICK_SECONDS = 10.0  # lost workers are noticed within LOST_AFTER + this; each tick is a file in done/
WATCH_SECONDS = 2.0
MARK = "TRIVIALCI_UP"
SAFETY_NET_SECONDS = 300.0
# Only the hub reads these (and removes them from its own environment): the gitwatchers never get them.
SECRET_NAMES = ("TRIVIALCI_WEBHOOK_SECRET", "TRIVIALCI_GITHUB_TOKEN", "TRIVIALCI_GITEA_TOKEN", "TRIVIALCI_GITLAB_TOKEN")


def default_paths() -> dict:
    data = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share") / "trivialci"
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "trivialci"
    return {"spool": data / "spool", "store": f"file://{data / 'store'}", "workdir": cache}


def start_tree(repos, spool: Path, store: str, workdir: Path, pipeline: Path, ui: str | None = None,
               hub_args=(), poll: float = WATCH_SECONDS, allow_hosts=(), output=None) -> list[subprocess.Popen]:
    """The hub (serving its web UI on `ui`, HOST:PORT, if given; `hub_args` added) and a gitwatcher for each of
    `repos` (one repository as a string works too), as this process's children.

    `allow_hosts` reach the hub, and the workers it boots, as TRIVIALCI_ALLOW_HOSTS in their environment;
    `output`, an open file, takes what every one of them prints (None: this process's stderr).
    """
    trivialci = [sys.executable, "-m", "trivialci"]
    env = {**os.environ, MARK: up_mark(), **({ALLOW_HOSTS_ENV: " ".join(allow_hosts)} if allow_hosts else {})}
    hub = subprocess.Popen([*trivialci, "hub", "--spool", str(spool), "--store", store, "--workdir",
                            str(workdir / "hub"), "--tick", str(TICK_SECONDS), "--pipeline", str(pipeline),
                            *(["--ui", ui] if ui else []), *hub_args], env=env, stdout=output, stderr=output)
    environment = {name: value for name, value in env.items() if name not in SECRET_NAMES}
    watchers = [subprocess.Popen([*trivialci, "gitwatcher", "--spool", str(spool), "--repo", repo,
                                  "--interval", str(poll)], env=environment, stdout=output, stderr=output)
                for repo in ([repos] if isinstance(repos, str) else repos)]
    return [*watchers, hub]


def up_mark() -> str:
    """This process's identity, PID.START_TICKS: no other process, now or later, has both."""
    return f"{os.getpid()}.{processes.start_ticks(os.getpid())}"


def wait_for_signal(children: list[subprocess.Popen], every=None) -> int:
    """Sleep until SIGINT/SIGTERM, or until a child dies (its status, to exit with); call `every()` each half
    second meanwhile."""
    stop = []
    previous = {sig: signal.signal(sig, lambda signum, frame: stop.append(signum))
                for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        while not stop:
            for child in children:
                if child.poll() is not None:
                    return child.returncode or 1
            signal.sigtimedwait([signal.SIGCHLD], 0.5) if hasattr(signal, "sigtimedwait") else time.sleep(0.5)
            if every is not None:
                every()
        return 0
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def stop_tree(children: list[subprocess.Popen], spool: Path, grace: float = 15.0) -> None:
    """SIGTERM to the gitwatcher, the hub, then the workers this up started; wait; SIGKILL what is left."""
    for child in children:
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
    workers = own_workers(spool)
    try:
        for pidfd in workers:
            processes.send_to(pidfd, signal.SIGTERM)
        deadline = time.monotonic() + grace
        for child in children:
            try:
                child.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
        for pidfd in processes.wait_for_exits(workers, deadline):
            processes.send_to(pidfd, signal.SIGKILL)
    finally:
        for pidfd in workers:
            os.close(pidfd)


def own_workers(spool: Path) -> list[int]:
    """pidfds of the local workers whose process carries this up's mark: the ones its hub booted."""
    marked = (processes.open_marked(pid, f"{MARK}={up_mark()}") for pid in local_worker_pids(spool))
    return [pidfd for pidfd in marked if pidfd is not None]


def local_worker_pids(spool: Path) -> list[int]:
    """Pids that the workers' heartbeats on this host name: what they say, not proof of anything (see own_workers)."""
    pids = []
    for name in worker_names(spool):
        beat = read_heartbeat(worker_dir(spool, name).heartbeat) or {}
        if beat.get("host") == socket.gethostname() and isinstance(beat.get("pid"), int):
            pids.append(beat["pid"])
    return pids
