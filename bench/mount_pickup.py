"""Pickup through an sshfs mount: from a drop on the hub's host to the start of a worker's script on another host.

A worker host sees the spool through sshfs, where inotify cannot see the hub
host's writes, so the worker polls its inbox. Hosts are network namespaces of
this machine joined by veth links, with sshd in each (tests/hosts.py); every
host shares this machine's clock and file system, which is what makes the
figures comparable.

(a) Latency. This process drops one event at a time atomically
(trivialci.emit) into SPOOL/workers/w1/inbox/ by the spool's local path on the
hub side; the clock starts just before emit() and stops at the time an
executable #!/bin/sh script takes as its first action (`date +%s%N`), which it
appends, with its event id, to a marks file on the local disk. The next event
goes once this one is recorded in done/ and a random pause of 0..poll has
passed, so that drops are not phase-locked with the worker's polling. Workers:
  - local spool, inotify (the baseline): the worker on the hub's host, on the spool path itself;
  - through sshfs with the default options and the default polling (the node picks 1 s on fuse.sshfs);
  - through sshfs with --poll 0.2;
  - through sshfs with the directory cache on (no dir_cache=no, dcache_timeout=--dcache-timeout):
    why dir_cache=no is recommended; drops that wait longer than one poll interval are "late".
Rounds take one sample of each, in a new random order each round (seeded).

(b) Idle CPU. Afterwards the same workers, plus workers polling a local spool,
idle side by side; their CPU time is read at the
edges of equal windows (the sum of the threads' /proc/PID/task/*/schedstat,
in ns; utime+stime count 10 ms ticks): the node's, that of the sshfs process serving its mount
(with its ssh client), and that of the hub-side sshd session serving that
connection (sftp runs inside it: internal-sftp).

    .venv/bin/python bench/mount_pickup.py            (as root)
    .venv/bin/python bench/mount_pickup.py --events 40 --idle-seconds 30
"""

import argparse
import json
import os
import random
import re
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import trivialci  # noqa: E402
from _util import (PYTHON, ROOT, Scratch, cpu_seconds, median, ms, percentile, print_table, ratio, spread,  # noqa: E402
                   stop, wait_for, write_script)

sys.path.insert(0, str(ROOT / "tests"))
import hosts  # noqa: E402  (tests/hosts.py: network namespaces, sshd, sshfs; it imports pytest)

EVENT_TYPE = "ping"
PROBE = """#!/bin/sh
first_line=$(date +%s%N)
echo "$first_line $TRIVIALCI_EVENT_ID" >> "$BENCH_MARKS"
"""
INOTIFY_JITTER = 0.1  # random pause after a sample of a worker that does not poll, seconds
LATE_MARGIN = 0.25  # "late": picked up more than one poll interval plus this after the drop


def cached_options(dcache_timeout: float) -> str:
    """The default options without dir_cache=no: sshfs keeps directory listings for dcache_timeout seconds."""
    kept = [option for option in hosts.DEFAULT_SSHFS_OPTIONS.split(",") if not option.startswith("dir_cache")]
    return ",".join(kept + [f"dcache_timeout={dcache_timeout:g}"])


class Marks:
    """The lines the probe script appends: 'FIRST_LINE_NS EVENT_ID'."""

    def __init__(self, path: Path):
        self.path = path
        path.touch()

    def find(self, stem: str) -> int | None:
        for line in self.path.read_text().splitlines(keepends=True):
            if line.endswith("\n") and line.rstrip("\n").endswith(stem):
                return int(line.split(" ", 1)[0])
        return None


class Worker:
    """`trivialci worker --name w1` on a spool of its own: on the hub's host, or on a worker host through sshfs."""

    def __init__(self, label: str, network, tmp: Path, number: int, pipeline: Path, poll: float | None = None,
                 sshfs_options: str | None = None):
        self.label, self.network = label, network
        root = tmp / f"t{number}"
        self.spool = root / "spool"  # the hub's path: drops go here
        self.spool.mkdir(parents=True)
        self.marks = Marks(root / "marks")
        self.sshfs_options = sshfs_options
        self.sshfs_pids: list[int] = []
        self.sshd_pids: list[int] = []
        host = network.hub
        node_spool = self.spool
        if sshfs_options is not None:
            host = network.workers[0]
            before = set(descendants(network.hub.sshd.pid))
            node_spool = network.mount(host, self.spool, root / "mnt", sshfs_options)
            sshfs = network.processes[-1]  # mount() started it last
            self.sshfs_pids = [sshfs.pid, *descendants(sshfs.pid)]  # sshfs and its ssh client
            self.sshd_pids = [pid for pid in descendants(network.hub.sshd.pid) if pid not in before]
        self.host = host
        self.stderr_path = root / "worker.stderr"
        argv = [PYTHON, "-m", "trivialci", "worker", "--spool", node_spool, "--name", "w1", "--kind", "bench",
                "--log-listen", "off", "--workdir", root / "disk", "--pipeline", pipeline, "--grace", "1",
                *(["--poll", poll] if poll is not None else [])]
        with open(self.stderr_path, "wb") as stderr:
            self.process = host.popen(argv, env={"BENCH_MARKS": str(self.marks.path)}, stdout=subprocess.DEVNULL,
                                      stderr=stderr, cwd=root)
        self.poll = poll
        self.polling = None
        self.samples: list[float] = []

    def wait_ready(self, timeout: float = 30.0) -> "Worker":
        """Until its heartbeat is on the spool: it holds its directory and looks at its inbox."""
        heartbeat = self.spool / "workers" / "w1" / "worker.json"
        wait_for(lambda: heartbeat.exists() or self.process.poll() is not None, timeout, f"{self.label} to start")
        if self.process.poll() is not None:
            raise RuntimeError(f"{self.label}: the worker exited with {self.process.returncode}:\n{self.stderr_tail()}")
        self.polling = wait_for(lambda: _read_json(heartbeat), timeout, f"{self.label}'s heartbeat").get("polling")
        if self.polling and self.poll is None:  # the node chose to poll: how often
            self.poll = float(re.search(r"every ([0-9.]+) s", self.polling).group(1))
        return self

    def sample(self, timeout: float) -> float:
        """One drop; the seconds from just before emit() to the script's first line."""
        started = time.time_ns()
        path = trivialci.emit(EVENT_TYPE, {"bench": "mount_pickup"}, to="worker:w1", spool=self.spool)
        stem = path.name[:-len(".json")]
        first_line = wait_for(lambda: self.marks.find(stem), timeout, f"{self.label}'s script to start")
        wait_for(lambda: self._recorded(stem), timeout, f"{self.label} to record {stem}")
        latency = (first_line - started) / 1e9
        self.samples.append(latency)
        return latency

    def _recorded(self, stem: str) -> bool:
        node = self.spool / "workers" / "w1"
        if list(node.glob(f"failed/*/*-{stem}.result.json")):
            raise RuntimeError(f"{self.label}: the probe failed; see {node}/failed/\n{self.stderr_tail()}")
        return bool(list(node.glob(f"done/*/*-{stem}.result.json")))

    def cpu(self) -> dict[str, float]:
        """CPU seconds so far: the node, sshfs with its ssh client, the hub's sshd session."""
        return {"node": cpu_time(self.process.pid), "sshfs": _cpu_of(self.sshfs_pids),
                "sshd": _cpu_of(self.sshd_pids)}

    def stop(self) -> None:
        stop(self.process)

    def stderr_tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.stderr_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no stderr)"


def _read_json(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _cpu_of(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        try:
            total += cpu_time(pid)
        except (FileNotFoundError, ProcessLookupError):
            pass
    return total


def cpu_time(pid: int) -> float:
    """CPU seconds a process's threads have run: the sum of /proc/PID/task/*/schedstat (nanoseconds; the
    utime+stime of /proc/PID/stat count 10 ms ticks, too coarse for a node that idles at a few hundredths
    of a percent), or utime+stime where there is no schedstat."""
    try:
        total = 0
        for task in os.scandir(f"/proc/{pid}/task"):
            try:
                total += int(Path(task.path, "schedstat").read_text().split()[0])
            except FileNotFoundError:
                pass  # the thread ended just now
        return total / 1e9
    except (FileNotFoundError, IndexError, ValueError):
        return cpu_seconds(pid)


def descendants(pid: int) -> list[int]:
    """Every live process below `pid`, from /proc."""
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                parent = int(Path(entry.path, "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(parent, []).append(int(entry.name))
    found, queue = [], [pid]
    while queue:
        for child in children.get(queue.pop(), []):
            found.append(child)
            queue.append(child)
    return found


# --- (a) latency ------------------------------------------------------------

def measure_latency(workers: list[Worker], args) -> None:
    shuffler = random.Random(args.seed)
    for number in range(args.warmup + args.events):
        for worker in shuffler.sample(workers, len(workers)):
            worker.sample(args.timeout)
            time.sleep(shuffler.uniform(0, worker.poll or INOTIFY_JITTER))
        if number == args.warmup - 1:
            for worker in workers:
                worker.samples.clear()


def report_latency(workers: list[Worker], args) -> None:
    baseline = median(workers[0].samples)
    rows = []
    for worker in workers:
        values = worker.samples
        late = sum(value > worker.poll + LATE_MARGIN for value in values) if worker.poll else 0
        rows.append([worker.label, ms(median(values)), ms(sum(values) / len(values)), ms(percentile(values, 10)), ms(percentile(values, 90)),
                     spread(values, 1e3), ms(median(values) - baseline) if worker is not workers[0] else "-",
                     ms(worker.poll / 2) if worker.poll else "-", f"{late}/{len(values)}" if worker.poll else "-",
                     f"{ratio(median(values), baseline):.1f}x"])
    print_table(f"(a) drop on the hub's host -> first line of the worker's #!/bin/sh script, "
                f"{len(workers[0].samples)} events each, ms",
                ["worker", "p50", "mean", "p10", "p90", "min-max", "p50 - local", "poll/2", "late", "p50 vs local"], rows)
    print(f"  late: picked up more than one poll interval + {LATE_MARGIN * 1e3:g} ms after the drop "
          "(a stale directory listing)")
    print(f"  a polled drop waits a uniform share of the interval: the p50 of {len(workers[0].samples)} events moves by "
          f"about poll/(2*sqrt(N)) = {1e3 / (2 * len(workers[0].samples) ** 0.5):.0f} ms per second of poll from run to run")


# --- (b) idle ---------------------------------------------------------------

def measure_idle(workers: list[Worker], args) -> dict:
    """{label: {part: [CPU % of one core per window]}}."""
    time.sleep(args.idle_warmup)
    edges = [(time.monotonic(), {w.label: w.cpu() for w in workers})]
    for _ in range(args.windows):
        time.sleep(args.idle_seconds / args.windows)
        edges.append((time.monotonic(), {w.label: w.cpu() for w in workers}))
    shares = {w.label: {part: [] for part in ("node", "sshfs", "sshd", "total")} for w in workers}
    for (start, before), (end, after) in zip(edges, edges[1:]):
        for w in workers:
            parts = {part: 100 * (after[w.label][part] - before[w.label][part]) / (end - start)
                     for part in ("node", "sshfs", "sshd")}
            parts["total"] = sum(parts.values())
            for part, share in parts.items():
                shares[w.label][part].append(share)
    return shares


def report_idle(workers: list[Worker], shares: dict, args) -> None:
    def overall(values):
        return sum(values) / len(values)

    baseline = overall(shares[workers[0].label]["node"])
    rows = []
    for w in workers:
        parts = shares[w.label]
        mounted = w.sshfs_options is not None
        rows.append([w.label, f"{overall(parts['node']):.3f}", spread(parts["node"], digits=3),
                     f"{overall(parts['sshfs']):.3f}" if mounted else "-",
                     f"{overall(parts['sshd']):.3f}" if mounted else "-",
                     f"{overall(parts['total']):.3f}", spread(parts["total"], digits=3),
                     f"{ratio(overall(parts['node']), baseline):.1f}x",
                     f"{ratio(overall(parts['total']), baseline):.1f}x",
                     f"{overall(parts['total']) - baseline:+.3f}"])
    print_table(f"(b) idle on an empty inbox, % of one CPU over {args.idle_seconds:g} s "
                f"(min-max: of {args.windows} windows)",
                ["worker", "node", "node min-max", "sshfs+ssh", "hub sshd", "total", "total min-max",
                 "node vs local", "total vs local", "total - local"], rows)
    print("  sshfs+ssh: the worker host's sshfs process serving the mount and its ssh client; hub sshd: the session "
          "serving that connection (internal-sftp)")


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=20, help="measured events per worker [20]")
    parser.add_argument("--warmup", type=int, default=2, help="events per worker sent first, not counted [2]")
    parser.add_argument("--timeout", type=float, default=60.0, help="deadline per event, seconds [60]")
    parser.add_argument("--seed", type=int, default=1, help="seed of the order of workers and of the pauses [1]")
    parser.add_argument("--dcache-timeout", type=float, default=2.0,
                        help="dcache_timeout of the mount that keeps its directory cache (sshfs's own default: "
                             "20); 0: leave that worker out [2]")
    parser.add_argument("--idle-seconds", type=float, default=12.0, help="measured idle time [12]")
    parser.add_argument("--windows", type=int, default=4, help="windows the idle time is cut into [4]")
    parser.add_argument("--idle-warmup", type=float, default=3.0, help="seconds of idle not measured first [3]")
    return parser.parse_args()


def main() -> int:
    args = parse_args()
    reason = hosts.skip_reason()
    if reason:
        print(f"mount pickup: skipped: {reason}")
        return 0
    print(f"mount pickup: {PYTHON}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}; "
          f"{args.events} events per worker after {args.warmup} warm-up events, random pause 0..poll between")
    print(f"  a worker on host w1 polls the hub's spool through sshfs -o {hosts.DEFAULT_SSHFS_OPTIONS}")
    print(f"  vs the same worker on the hub's host on the local spool (inotify); sshfs: {_sshfs_version()}")
    with Scratch("trivialci-bench-mount-") as tmp:
        pipeline = tmp / "pipeline"
        write_script(pipeline, EVENT_TYPE, PROBE, executable=True)
        network = hosts.Network(tmp / "net", workers=1)
        workers: list[Worker] = []
        idlers: list[Worker] = []
        try:
            configs = [("local spool, inotify (baseline)", None, None),
                       ("sshfs, default poll", None, hosts.DEFAULT_SSHFS_OPTIONS),
                       ("sshfs, --poll 0.2", 0.2, hosts.DEFAULT_SSHFS_OPTIONS)]
            if args.dcache_timeout:
                configs.append((f"sshfs dir cache {args.dcache_timeout:g} s, default poll", None,
                                cached_options(args.dcache_timeout)))
            for label, poll, options in configs:
                workers.append(Worker(label, network, tmp, len(workers), pipeline, poll, options))
            for worker in workers:
                worker.wait_ready()
            for worker in workers:
                print(f"  {worker.label}: {worker.polling or 'inotify'}"
                      + (f" (-o {worker.sshfs_options})" if worker.sshfs_options != hosts.DEFAULT_SSHFS_OPTIONS
                         and worker.sshfs_options else ""))
            measure_latency(workers, args)
            report_latency(workers, args)

            for label, poll in (("local spool, --poll 1", 1.0), ("local spool, --poll 0.2", 0.2)):
                idlers.append(Worker(label, network, tmp, len(workers) + len(idlers), pipeline, poll))
            for worker in idlers:
                worker.wait_ready()
            idle = [workers[0], *idlers, *workers[1:]]
            shares = measure_idle(idle, args)
            report_idle(idle, shares, args)
        finally:
            for worker in workers + idlers:
                worker.stop()
            network.close()
    return 0


def _sshfs_version() -> str:
    try:
        out = subprocess.run(["sshfs", "--version"], capture_output=True, text=True, timeout=10)
        return next(line.split()[-1] for line in (out.stdout + out.stderr).splitlines() if line.startswith("SSHFS"))
    except (OSError, StopIteration, subprocess.SubprocessError):
        return "?"


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
