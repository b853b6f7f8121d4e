"""Log follow latency: from a line printed by a build to that line read by a client following the log server.

The real path, in three processes and a server:

    build          prints LINES lines, one every INTERVAL s, each carrying its CLOCK_MONOTONIC time
    copier         trivialci.buildlog.LogCopier, as start_work runs it: pipe -> WORKDIR/logs/JOB.log
    log server     trivialci.web.logserver.LogServer on 127.0.0.1, in this process
    client         GET /logs/JOB?follow=1 over real HTTP, in this process; latency = read time - printed time

CLOCK_MONOTONIC is one clock for every process on a Linux machine. The server
polls a followed log every logserver.POLL s, so that is the expected median's scale.

    .venv/bin/python bench/log_follow.py
    .venv/bin/python bench/log_follow.py --lines 200 --interval 0.01
"""

import argparse
import http.client
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from trivialci.web import logserver
from trivialci.web.logserver import LogServer

JOB = "20261125T033000Z-be9c40"
BUILD = """
import sys, time
for number in range({lines}):
    print(number, time.monotonic_ns(), flush=True)
    time.sleep({interval})
"""
COPIER = """
import os, sys
from pathlib import Path
from trivialci.worker.buildlog import LogCopier, ended_marker
log = Path(sys.argv[1])
LogCopier(os.dup(0), log).start().join()
ended_marker(log).write_text("ended\\n")
"""


def measure(logs: Path, lines: int, interval: float) -> list[float]:
    """Latencies in ms of every line, read while it is being written."""
    build = subprocess.Popen([sys.executable, "-c", BUILD.format(lines=lines, interval=interval)],
                             stdout=subprocess.PIPE)
    copier = subprocess.Popen([sys.executable, "-c", COPIER, str(logs / f"{JOB}.log")], stdin=build.stdout)
    build.stdout.close()
    try:
        with LogServer(logs) as server:
            return _follow(server, logs, lines)
    finally:
        build.wait(60)
        copier.wait(60)


def _follow(server: LogServer, logs: Path, lines: int) -> list[float]:
    deadline = time.monotonic() + 30
    while not (logs / f"{JOB}.log").exists():  # the copier opens it when it starts
        if time.monotonic() > deadline:
            raise SystemExit("the copier never started")
        time.sleep(0.005)
    host, port = server.url.removeprefix("http://").rsplit(":", 1)
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    connection.request("GET", f"/logs/{JOB}?follow=1")
    response, latencies = connection.getresponse(), []
    while line := response.readline():
        received = time.monotonic_ns()
        latencies.append((received - int(line.split()[2])) / 1e6)
    connection.close()
    if len(latencies) != lines:
        raise SystemExit(f"read {len(latencies)} lines of {lines}")
    return latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=100, help="lines to print (>= 50 for a median worth it)")
    parser.add_argument("--interval", type=float, default=0.02, help="seconds between lines")
    options = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="trivialci-bench-"))
    try:
        (scratch / "logs").mkdir()
        latencies = measure(scratch / "logs", options.lines, options.interval)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    quantiles = statistics.quantiles(latencies, n=10)
    print(f"log follow latency over {len(latencies)} lines, one every {options.interval * 1000:g} ms "
          f"(server poll {logserver.POLL * 1000:g} ms):")
    print(f"  median {statistics.median(latencies):.1f} ms   p90 {quantiles[-1]:.1f} ms   "
          f"min {min(latencies):.1f} ms   max {max(latencies):.1f} ms")


if __name__ == "__main__":
    main()
