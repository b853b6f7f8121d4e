"""The hub's web UI under load it did not ask for: memory while large logs download, latency beside idle connections.

One real hub (`trivialci hub --ui 127.0.0.1:0`, no --tick, so nothing else
runs) on a spool with one job in state/ and a directory store whose
jobs/JOB/log.txt is SIZE MiB (a sparse file: read at memory speed, no disk).

(a) memory: the hub's RSS (VmRSS of /proc/PID/status) idle, then sampled every
    10 ms while three clients download the stored log at once (each reads 1 MiB
    at a time and drops it); the peak of each round. Ratio: peak / idle.
(b) latency: the time of GET /jobs/JOB (a fresh connection, the whole answer,
    one every 10 ms) with no other connection, then with 500 connections held
    open that send nothing, then with 500 that reconnect as soon as the hub
    drops one (an attacker who insists), then with none again. Ratio: each
    against the same run's first "none".

    .venv/bin/python bench/web_hardening.py
    .venv/bin/python bench/web_hardening.py --size-mib 256 --requests 100 --tree /work/main

--tree runs the hub of another checkout (PYTHONPATH), e.g. to measure the code
before a change with the same script.
"""

import argparse
import http.client
import json
import os
import selectors
import socket
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _util import PYTHON, Scratch, median, print_table, ratio, rss_kib, spawn, spread, stop, wait_for  # noqa: E402

JOB = "20261125T033000Z-be9c40"
MIB = 1 << 20
PACE = 0.01  # seconds between two requests of a latency phase


def start_hub(root: Path, size_mib: int, tree: str | None):
    spool, store = root / "spool", root / "store"
    (spool / "state" / "jobs").mkdir(parents=True)
    (spool / "state" / ".built").write_text('{"events": 0}\n')
    record = {"job": JOB, "repo": "/srv/repo.git", "branch": "main", "sha": "a" * 40, "kind": "build", "attempt": 1,
              "status": "PASSED", "worker": "build-1", "queued": "2026-11-25T03:30:00.000Z", "run_time": 1.0}
    (spool / "state" / "jobs" / f"{JOB}.json").write_text(json.dumps(record) + "\n")
    (store / "jobs" / JOB).mkdir(parents=True)
    with open(store / "jobs" / JOB / "log.txt", "wb") as log:
        log.truncate(size_mib * MIB)
    env = {**os.environ, **({"PYTHONPATH": tree} if tree else {})}
    hub = spawn([PYTHON, "-m", "trivialci", "hub", "--spool", str(spool), "--store", f"file://{store}",
                 "--workdir", str(root / "wd"), "--ui", "127.0.0.1:0"], env=env, stderr=(root / "hub.log").open("w"),
                cwd=root)  # `python -m` puts its directory first on sys.path: not this checkout's
    url = wait_for(lambda: _ui_url(spool), 30, "the hub to serve its UI")
    return hub, int(url.rstrip("/").rsplit(":", 1)[1])


def _ui_url(spool: Path):
    try:
        return json.loads((spool / "hub.json").read_text()).get("ui_url")
    except (OSError, ValueError):
        return None


def download(port: int, path: str) -> int:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    try:
        connection.request("GET", path)
        response, received = connection.getresponse(), 0
        while chunk := response.read(MIB):
            received += len(chunk)
        return received
    finally:
        connection.close()


def memory_round(hub, port: int, size: int) -> tuple[float, float, float]:
    """(idle RSS MiB, peak RSS MiB during three downloads, seconds the downloads took)."""
    idle = median([rss_kib(hub.pid) for _ in range(5)]) / 1024
    got, peak = [], [0]
    clients = [threading.Thread(target=lambda: got.append(download(port, f"/jobs/{JOB}/log"))) for _ in range(3)]
    started = time.perf_counter()
    for client in clients:
        client.start()
    while any(client.is_alive() for client in clients):
        peak[0] = max(peak[0], rss_kib(hub.pid))
        time.sleep(0.01)  # sampling period of the RSS, not a synchronisation
    elapsed = time.perf_counter() - started
    if got != [size] * 3:
        raise RuntimeError(f"the downloads received {got}, not 3 x {size} bytes")
    return idle, peak[0] / 1024, elapsed


def request_time(port: int) -> float:
    started = time.perf_counter()
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        connection.request("GET", f"/jobs/{JOB}")
        response = connection.getresponse()
        response.read()
        if response.status != 200:
            raise RuntimeError(f"GET /jobs/{JOB} answered {response.status}")
    finally:
        connection.close()
    return time.perf_counter() - started


class IdleClients:
    """`count` connections that never send a byte; with `insist`, each one the hub closes is opened again."""

    def __init__(self, port: int, count: int, insist: bool):
        self.port, self.insist, self.stopping = port, insist, threading.Event()
        self.selector, self.reconnects = selectors.DefaultSelector(), 0
        for _ in range(count):
            self._open()
        self.thread = threading.Thread(target=self._watch, daemon=True)
        self.thread.start()

    def _open(self) -> None:
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=30)
        sock.setblocking(False)
        self.selector.register(sock, selectors.EVENT_READ)

    def _watch(self) -> None:
        while not self.stopping.is_set():
            for key, _ in self.selector.select(0.1):
                if self._closed(key.fileobj) and self.insist and not self.stopping.is_set():
                    self._open()
                    self.reconnects += 1

    def _closed(self, sock: socket.socket) -> bool:
        try:
            if sock.recv(4096):
                return False
        except BlockingIOError:
            return False
        except OSError:
            pass
        self.selector.unregister(sock)
        sock.close()
        return True

    def close(self) -> None:
        self.stopping.set()
        self.thread.join()
        for key in list(self.selector.get_map().values()):
            key.fileobj.close()
        self.selector.close()


def latencies(port: int, requests: int, idle: int, insist: bool) -> tuple[list[float], int]:
    """Request times, one request every PACE s (so that a phase lasts long enough for the idle clients to act)."""
    clients = IdleClients(port, idle, insist) if idle else None
    try:
        times = []
        for _ in range(requests):
            times.append(request_time(port))
            time.sleep(PACE)  # the shape of the load, not a synchronisation
        return times, clients.reconnects if clients else 0
    finally:
        if clients:
            clients.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=1024, help="size of the stored log")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of three downloads")
    parser.add_argument("--requests", type=int, default=200, help="job pages asked for in each latency phase")
    parser.add_argument("--idle", type=int, default=500, help="connections held open")
    parser.add_argument("--tree", default=None, help="run the hub of this checkout instead (PYTHONPATH)")
    args = parser.parse_args()
    with Scratch() as root:
        hub, port = start_hub(root, args.size_mib, args.tree)
        request_time(port)  # warm up: imports, page cache
        memory = [memory_round(hub, port, args.size_mib * MIB) for _ in range(args.rounds)]
        phases = {name: latencies(port, args.requests, idle, insist) for name, idle, insist in
                  (("none", 0, False), (f"{args.idle} held open", args.idle, False),
                   (f"{args.idle} reconnecting", args.idle, True), ("none, again", 0, False))}
        stop(hub)
    report(args, memory, phases)
    return 0


def report(args, memory, phases) -> None:
    idle, peak, seconds = ([round_[i] for round_ in memory] for i in range(3))
    rates = [3 * args.size_mib / s for s in seconds]
    print_table(f"(a) hub RSS, MiB: idle, and the peak while 3 clients download a {args.size_mib} MiB stored log "
                f"({args.rounds} rounds{', tree ' + args.tree if args.tree else ''})",
                ["", "median", "range", "ratio to idle"],
                [["idle, before any download", f"{idle[0]:.1f}", "", "1.00"],
                 ["idle, before each round", f"{median(idle):.1f}", spread(idle, 1, 1),
                  f"{ratio(median(idle), idle[0]):.2f}"],
                 ["3 downloads, peak", f"{median(peak):.1f}", spread(peak, 1, 1),
                  f"{ratio(median(peak), idle[0]):.2f}"],
                 ["download rate, MiB/s", f"{median(rates):.0f}", spread(rates, 1, 0), ""]])
    base = median(phases["none"][0])
    print_table(f"(b) GET /jobs/JOB, ms, {args.requests} requests a phase, a fresh connection each",
                ["other connections", "median", "p90", "range", "ratio to none", "reconnects"],
                [[name, f"{median(times) * 1e3:.2f}", f"{sorted(times)[int(len(times) * 0.9)] * 1e3:.2f}",
                  spread(times, 1e3), f"{ratio(median(times), base):.2f}", str(reconnects)]
                 for name, (times, reconnects) in phases.items()])


if __name__ == "__main__":
    sys.exit(main())
