"""Hub scheduling: jobs per second one hub runs through the shipped flow for 200 simulated workers.

A real hub on the shipped pipeline (no --tick) on a fresh spool, with JOBS
jobs queued before the clock starts (queue_job, as branch_update does; the
hub handles those QUEUED events first, untimed). WORKERS workers exist as
files only: their node directories and a fresh worker.json each. The clock
starts when every worker asks for work at once (work_required, real event
files in the hub's inbox). A simulated worker answers each start_work the hub
drops into its inbox as a real one does, with zero build time: work_status
BUILDING, work_status PASSED, work_done, then work_required again (threads of
this process, so that the hub is never waiting on one worker).

Per job the hub then handles: the work_required that gets it the job, the
STARTING it records itself, BUILDING, PASSED and work_done (5 events; the real
flow adds branch_update). Measured: jobs scheduled per second (every
start_work handed out) and jobs done per second (every PASSED folded into
state/jobs/), from the first work_required; the CPU the hub and its scripts
(and its fork server) used per event. Configurations alternate run by run:
the hub with its fork server, and the same with --no-fork-server or, with
--today PYTHON, today's hub instead: the interpreter of a checkout from before
the fork server (its own trivialci and its own pipeline/), the goal's baseline.

    .venv/bin/python bench/hub_dispatch.py --today /tmp/today/.venv/bin/python
    .venv/bin/python bench/hub_dispatch.py --workers 200 --jobs 200 --repeats 2 --dir /dev/shm
"""

import argparse
import json
import os
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import trivialci  # noqa: E402
from trivialci.hub import HubState, queue_job  # noqa: E402
from trivialci.jobs import new_job_id  # noqa: E402
from trivialci.spool.heartbeat import write_heartbeat  # noqa: E402
from trivialci.spool.layout import hub_dir, worker_dir  # noqa: E402
from _util import ROOT, Hub, Scratch, cpu_seconds, median, print_table, ratio, spread, verdict, wait_for  # noqa: E402

KIND, REPO = "build", "/srv/git/app.git"
GOAL_RATIO = 10.0
CONFIGURATIONS = {"fork server": (), "--no-fork-server": ("--no-fork-server",)}
TODAY = "today's hub (--today)"


class Workers:
    """WORKERS workers as files, answering each start_work as a real worker does (no build)."""

    def __init__(self, spool: Path, count: int, threads: int):
        self.spool = spool
        self.names = [f"w{number:03d}" for number in range(count)]
        self.handed: dict[str, float] = {}  # job -> when its start_work was seen
        self.pool = ThreadPoolExecutor(threads)
        self.stop = threading.Event()
        for name in self.names:
            worker_dir(spool, name).create()
        self.beat()

    def beat(self) -> None:
        for name in self.names:
            write_heartbeat(worker_dir(self.spool, name), {"node": name, "kind": KIND, "worker": name,
                                                           "host": socket.gethostname(), "pid": os.getpid()})

    def ask_all(self) -> None:
        list(self.pool.map(lambda name: self._emit("work_required", {"worker": name, "kind": KIND}), self.names))

    def watch(self) -> None:
        """Until stopped: take each start_work from the workers' inboxes and answer it in a pool thread."""
        next_beat = time.monotonic() + 10
        while not self.stop.is_set():
            for name in self.names:
                self._take(name)
            if time.monotonic() > next_beat:
                self.beat()
                next_beat = time.monotonic() + 10
            self.stop.wait(0.01)

    def _take(self, name: str) -> None:
        inbox = worker_dir(self.spool, name).inbox
        for entry in os.scandir(inbox):
            if entry.name.startswith("start_work.") and entry.name.endswith(".json"):
                package = json.loads(Path(entry.path).read_text())
                os.unlink(entry.path)
                self.handed.setdefault(package["job"], time.monotonic())
                self.pool.submit(self._run_job, name, package)

    def _run_job(self, name: str, package: dict) -> None:
        job, attempt = package["job"], package["attempt"]
        base = {"job": job, "attempt": attempt, "worker": name}
        self._emit("work_status", {**base, "status": "BUILDING", "started": _now()})
        self._emit("work_status", {**base, "status": "PASSED", "ended": _now(), "exit_code": 0,
                                   "reason": "exit status 0"})
        self._emit("work_done", {"job": job, "worker": name, "status": "PASSED"})
        self._emit("work_required", {"worker": name, "kind": KIND, "after": job, "attempt": attempt})

    def _emit(self, event_type: str, payload: dict) -> None:
        trivialci.emit(event_type, payload, to="hub", spool=self.spool)

    def close(self) -> None:
        self.stop.set()
        self.pool.shutdown(wait=True)


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + ".000Z"


def queue_jobs(spool: Path, count: int) -> list[str]:
    hub_dir(spool).create()
    state = HubState.open(spool)
    jobs = []
    for number in range(count):
        job = queue_job(state, {"job": new_job_id(), "repo": REPO, "branch": f"b{number}", "sha": "a" * 40,
                                "kind": KIND, "attempt": 1, "params": {}, "request": None})
        jobs.append(job["job"])
    return jobs


def inbox_empty(spool: Path) -> bool:
    return not [n for n in os.listdir(spool / "inbox") if n.endswith(".json")] and \
        not [n for n in os.listdir(spool / "work") if n.endswith(".json") or ".json." in n]


def passed(spool: Path, waiting: set[str]) -> set[str]:
    """The jobs of `waiting` whose state says PASSED now."""
    done = set()
    for job in waiting:
        try:
            if json.loads((spool / "state" / "jobs" / f"{job}.json").read_text()).get("status") == "PASSED":
                done.add(job)
        except (OSError, ValueError):
            pass
    return done


def handled_events(spool: Path) -> int:
    return sum(1 for day in (spool / "done").iterdir() for n in os.listdir(day) if n.endswith(".result.json"))


def fork_server_pids(hub: Hub) -> list[int]:
    text = hub.stderr_path.read_text(errors="replace")
    return [int(word) for line in text.splitlines() if "fork server pid" in line
            for word in line.split("fork server pid", 1)[1].split()[:1]]


def run_once(tmp: Path, options: tuple, args, python: str | None = None) -> dict:
    """One run on a fresh spool: {scheduled_s, done_s, events, cpu_s}; `python` runs another checkout's hub."""
    root = tmp / f"run-{time.monotonic_ns()}"
    spool = root / "spool"
    root.mkdir()
    jobs = set(queue_jobs(spool, args.jobs))
    workers = Workers(spool, args.workers, args.threads)
    pipeline = _checkout_of(python) / "pipeline" if python else ROOT / "pipeline"
    hub = Hub(spool, pipeline, "--store", f"file://{root / 'store'}", "--workdir", root / "work", *options,
              python=python or sys.executable)
    try:
        hub.wait_ready()
        wait_for(lambda: inbox_empty(spool), 300, "the hub to handle the queued jobs")
        before_events, before_cpu = handled_events(spool), _cpu(hub)
        watcher = threading.Thread(target=workers.watch, name="workers")
        watcher.start()
        started = time.monotonic()
        workers.ask_all()
        waiting = set(jobs)
        while waiting:
            waiting -= passed(spool, waiting)
            if time.monotonic() - started > args.timeout:
                raise RuntimeError(f"{len(waiting)} jobs not PASSED after {args.timeout} s:\n{hub.stderr_tail()}")
            time.sleep(0.05)
        done_s = time.monotonic() - started
        scheduled_s = max(workers.handed.values()) - started
        wait_for(lambda: inbox_empty(spool), 120, "the hub's inbox to empty")
        result = {"scheduled_s": scheduled_s, "done_s": done_s, "events": handled_events(spool) - before_events,
                  "cpu_s": _cpu(hub) - before_cpu}
    finally:
        workers.close()
        if "watcher" in locals():
            watcher.join()
        hub.stop()
    return result


def _checkout_of(python: str) -> Path:
    """The checkout whose trivialci `python` imports (its pipeline/ is today's flow)."""
    found = subprocess.run([python, "-c", "import trivialci; print(trivialci.__file__)"], capture_output=True, cwd="/",
                           text=True, check=True)
    return Path(found.stdout.strip()).parent.parent


def _cpu(hub: Hub) -> float:
    """CPU of the hub, of the scripts it reaped, and of its fork server."""
    fields = Path(f"/proc/{hub.pid}/stat").read_text().rsplit(")", 1)[1].split()
    total = sum(int(field) for field in fields[11:15]) / os.sysconf("SC_CLK_TCK")
    for pid in fork_server_pids(hub):
        try:
            total += cpu_seconds(pid)
        except OSError:
            pass
    return total


def _filesystem(path: Path) -> str:
    best = ("", "?")
    for line in Path("/proc/mounts").read_text().splitlines():
        _, mount_point, kind = line.split()[:3]
        if str(path).startswith(mount_point.rstrip("/") + "/") and len(mount_point) > len(best[0]):
            best = (mount_point, kind)
    return best[1]


def _fsync_ms(directory: Path) -> float:
    """What one fsync of a small new file costs there now (the disk is shared with whatever else runs)."""
    costs = []
    for number in range(20):
        fd = os.open(directory / f".fsync-probe-{number}", os.O_WRONLY | os.O_CREAT, 0o600)
        os.write(fd, b"x" * 200)
        started = time.perf_counter()
        os.fsync(fd)
        costs.append(time.perf_counter() - started)
        os.close(fd)
        os.unlink(directory / f".fsync-probe-{number}")
    return median(costs) * 1e3


def report(results: dict, args) -> None:
    rows = []
    rates = {label: [args.jobs / r["scheduled_s"] for r in runs] for label, runs in results.items()}
    reference = TODAY if TODAY in results else "--no-fork-server"
    baseline = median(rates[reference])
    for label, runs in results.items():
        done = [args.jobs / r["done_s"] for r in runs]
        cpu = [r["cpu_s"] / r["events"] * 1e3 for r in runs]
        rows.append([label, f"{median(rates[label]):.1f}", spread(rates[label], digits=1), f"{median(done):.1f}",
                     spread(done, digits=1), f"{median(cpu):.1f}", f"{median([r['events'] for r in runs]):.0f}",
                     f"{ratio(median(rates[label]), baseline):.2f}x"])
    print_table(f"one hub, shipped pipeline, {args.workers} simulated workers, {args.jobs} jobs, {args.repeats} runs",
                ["hub", "scheduled jobs/s", "min-max", "done jobs/s", "min-max", "CPU ms/event", "events",
                 f"vs {reference}"], rows)
    gain = ratio(median(rates["fork server"]), baseline)
    print(f"  goal: >= {GOAL_RATIO:g}x today's jobs scheduled per second ({reference}): {gain:.2f}x -> "
          f"{verdict(gain >= GOAL_RATIO)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=200, help="simulated workers [200]")
    parser.add_argument("--jobs", type=int, default=200, help="jobs queued before the clock starts [200]")
    parser.add_argument("--repeats", type=int, default=2, help="runs of each configuration [2]")
    parser.add_argument("--threads", type=int, default=8, help="threads that answer for the workers [8]")
    parser.add_argument("--timeout", type=float, default=600.0, help="deadline of one run, seconds [600]")
    parser.add_argument("--today", default=None, metavar="PYTHON",
                        help="the interpreter of a checkout from before the fork server: today's hub, the baseline")
    parser.add_argument("--dir", default=None,
                        help="where the spools go, e.g. /dev/shm to leave the disk's fsync out [the temp dir]")
    args = parser.parse_args()
    configurations = {label: (options, None) for label, options in CONFIGURATIONS.items()}
    if args.today:  # today's hub replaces this tree's --no-fork-server as the reference
        del configurations["--no-fork-server"]
        configurations[TODAY] = ((), args.today)
    results: dict = {label: [] for label in configurations}
    with Scratch(directory=args.dir) as tmp:
        print(f"hub dispatch: {sys.executable}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}, spools in "
              f"{tmp} ({_filesystem(tmp)}), fsync {_fsync_ms(tmp):.2f} ms (median of 20)")
        for repeat in range(args.repeats):
            for label, (options, python) in configurations.items():
                result = run_once(tmp, options, args, python)
                results[label].append(result)
                print(f"  run {repeat + 1}/{args.repeats} {label}: scheduled {result['scheduled_s']:.2f} s, "
                      f"done {result['done_s']:.2f} s, {result['events']} events, {result['cpu_s']:.1f} s CPU, "
                      f"load {os.getloadavg()[0]:.2f}", flush=True)
    report(results, args)


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit(130)
