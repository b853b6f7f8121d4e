"""Retention: a year in fast-forward, the time of one prune at scale, and the hub's latency while one runs.

    .venv/bin/python bench/prune.py year     [--days 365] [--pushes 50] [--tick 10]
    .venv/bin/python bench/prune.py scale    [--records 100000] [--jobs 20000] [--runs 3]
    .venv/bin/python bench/prune.py latency  [--samples 200]

year: each simulated day a busy repository gets PUSHES pushes built by two
kinds (work_status events folded into state/ as the hub does, worker records,
store entries with a log and an artifact) and a tick every TICK seconds; the
daily prune (the shipped policy: 30 days, last 20, failed 90, ticks 1) runs
between days with `now` at the day's end. It prints the spool's and the
store's bytes and files per day: flat after KEEP_DAYS.

scale: RECORDS handled events in the hub's done/ over 60 days and JOBS jobs in a
directory store, then `trivialci prune` (a real process): --dry-run RUNS times
(median, spread), then the real run once.

latency: dispatch latency of a serving hub (emit -> first line of a Python
script, as bench/dispatch_latency.py) with and without a `trivialci prune` of
the scale data set running beside it at nice 10 (as pipeline/prune.py runs);
the ratio of the medians.
"""

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import trivialci  # noqa: E402
from trivialci.hub import HubState, RetentionPolicy, prune  # noqa: E402
from trivialci.spool.layout import hub_dir, worker_dir  # noqa: E402
from trivialci.store import open_store  # noqa: E402
from _util import PYTHON, Hub, Scratch, iqr, median, ms, print_table, ratio, spread, wait_for, write_script  # noqa: E402

DAY = 86400
START = 1_700_000_000 // DAY * DAY  # a midnight, UTC
POLICY = RetentionPolicy(30, 20, 90, 1, ("tick", "prune"))


def day_of(t: float) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(t))


class Recorder:
    """Writes records as nodes do (done/DAY/HHMMSS.ffffff-TYPE.x.json + .log + .result.json), fast, no fsync."""

    def __init__(self):
        self.seq = 0

    def record(self, node_root: Path, t: float, event_type: str, payload: dict) -> None:
        self.seq += 1
        folder = node_root / "done" / day_of(t)
        folder.mkdir(parents=True, exist_ok=True)
        stem = f"{time.strftime('%H%M%S', time.gmtime(t))}.{self.seq % 1000000:06d}-{event_type}.b{self.seq}"
        for suffix, body in ((".json", json.dumps(payload).encode()), (".log", b"handled\n"),
                             (".result.json", b'{"status": "done", "exit_code": 0}\n')):
            with open(folder / (stem + suffix), "wb") as out:
                out.write(body)


def simulate_day(spool, store, state, recorder, day: int, pushes: int, tick: float) -> None:
    base = START + day * DAY
    for second in range(0, DAY, int(tick)):
        recorder.record(spool, base + second, "tick", {})
    for push in range(pushes):
        t = base + (push + 0.5) * DAY / pushes
        for kind in ("build", "test"):
            job_events(spool, store, state, recorder, t, push, kind)


def job_events(spool, store, state, recorder, t, push, kind) -> None:
    job = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(t)) + f"-{push:03x}{'b' if kind == 'build' else 'e'}00"
    status = "FAILED" if push % 7 == 0 else "PASSED"
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(t))
    events = [{"job": job, "status": "QUEUED", "repo": "/srv/repo", "branch": f"b{push % 5}", "sha": "a" * 40,
               "kind": kind, "attempt": 1, "queued": stamp},
              {"job": job, "status": "STARTING", "attempt": 1, "worker": f"{kind}-1", "started": stamp},
              {"job": job, "status": "BUILDING", "attempt": 1, "worker": f"{kind}-1"},
              {"job": job, "status": status, "attempt": 1, "worker": f"{kind}-1", "ended": stamp}]
    for payload in events:
        recorder.record(spool, t, "work_status", payload)
        state.apply("work_status", payload)
    recorder.record(spool, t, "work_required", {"worker": f"{kind}-1", "kind": kind})
    state.apply("work_required", {"worker": f"{kind}-1", "kind": kind})
    recorder.record(spool / "workers" / f"{kind}-1", t, "start_work", events[0])
    store.put_bytes(f"jobs/{job}/log.txt", b"building...\n" * 200)
    store.put_bytes(f"jobs/{job}/files/out.bin", b"x" * 1024)
    store.put_bytes(f"jobs/{job}/job.json", json.dumps({**state.job(job), "ended": stamp}).encode())


def usage(root: Path) -> tuple[int, int]:
    files = size = 0
    for parent, _, names in os.walk(root):
        for name in names:
            files += 1
            size += os.lstat(os.path.join(parent, name)).st_size
    return files, size


def year(args) -> None:
    with Scratch() as tmp:
        spool, store_dir = tmp / "spool", tmp / "store"
        hub_dir(spool).create()
        for kind in ("build", "test"):
            worker_dir(spool, f"{kind}-1").create()
        store, state, recorder = open_store(store_dir.as_uri()), HubState.open(spool), Recorder()
        rows, prune_times = [], []
        for day in range(args.days):
            simulate_day(spool, store, state, recorder, day, args.pushes, args.tick)
            started = time.perf_counter()
            prune(spool, store, POLICY, now=START + (day + 1) * DAY - 1)
            prune_times.append(time.perf_counter() - started)
            if day % args.every == 0 or day == args.days - 1:
                rows.append(_year_row(day, spool, store_dir, prune_times[-1]))
                print(*rows[-1], flush=True)
        print_table(f"A year in fast-forward: {args.pushes} pushes x 2 kinds a day, a tick every {args.tick:g} s, "
                    f"daily prune (keep 30 days, last 20, failed 90, ticks 1)",
                    ["day", "spool files", "spool MiB", "state files", "store files", "store MiB", "prune s"], rows)
        print(f"\nprune time per day: median {median(prune_times):.2f} s, spread {spread(prune_times)} s")


def _year_row(day, spool, store_dir, seconds) -> list:
    spool_files, spool_bytes = usage(spool)
    state_files, _ = usage(spool / "state")
    store_files, store_bytes = usage(store_dir)
    return [day + 1, spool_files, f"{spool_bytes / 2**20:.1f}", state_files, store_files,
            f"{store_bytes / 2**20:.1f}", f"{seconds:.2f}"]


def fill_scale(tmp: Path, records: int, jobs: int, now: float) -> tuple[Path, str]:
    """RECORDS events over 60 days in the hub's done/, JOBS jobs over 200 days in a directory store."""
    spool, store_dir = tmp / "spool", tmp / "store"
    hub_dir(spool).create()
    recorder = Recorder()
    for n in range(records):
        t = now - 60 * DAY + n * (60 * DAY / records)
        recorder.record(spool, t, "tick" if n % 3 else "hello", {"n": n})
    for n in range(jobs):
        t = now - 200 * DAY + n * (200 * DAY / jobs)
        job = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(t)) + f"-{n:06x}"
        folder = store_dir / "jobs" / job
        (folder / "files").mkdir(parents=True)
        record = {"job": job, "repo": "/srv/repo", "branch": f"b{n % 10}", "kind": "build", "status": "PASSED",
                  "sha": "a" * 40, "ended": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(t))}
        (folder / "files" / "out.bin").write_bytes(b"x" * 1024)
        (folder / "log.txt").write_bytes(b"log\n" * 100)
        (folder / "job.json").write_text(json.dumps(record))
    return spool, store_dir.as_uri()


def prune_process(spool, store, *extra, nice=0) -> subprocess.Popen:
    argv = [PYTHON, "-m", "trivialci", "prune", "--spool", str(spool), "--store", store, *extra]
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            preexec_fn=(lambda: os.nice(nice)) if nice else None)


def timed(process: subprocess.Popen) -> float:
    started = time.perf_counter()
    _, stderr = process.communicate()
    if process.returncode:
        raise RuntimeError(f"prune failed: {stderr.decode()}")
    return time.perf_counter() - started


def scale(args) -> None:
    with Scratch() as tmp:
        started = time.perf_counter()
        spool, store = fill_scale(tmp, args.records, args.jobs, time.time())
        print(f"filled {args.records} records and {args.jobs} jobs in {time.perf_counter() - started:.0f} s")
        dry = [timed(prune_process(spool, store, "--dry-run")) for _ in range(args.runs)]
        real = timed(prune_process(spool, store))
        print_table(f"Prune of {args.records} records in done/ and {args.jobs} jobs in a directory store",
                    ["run", "median s", "spread s", "runs"],
                    [["--dry-run", f"{median(dry):.2f}", spread(dry), len(dry)], ["real", f"{real:.2f}", "-", 1]])


PROBE = """import time; FIRST_LINE = time.time()
import os
with open(os.environ["BENCH_MARKS"], "a") as marks:
    marks.write(f"{FIRST_LINE!r}\\n")
"""


def latency(args) -> None:
    with Scratch() as tmp:
        spool, store = fill_scale(tmp / "data", args.records, args.jobs, time.time())
        pipeline, marks = tmp / "pipeline", tmp / "marks"
        write_script(pipeline, "probe.py", PROBE)
        marks.touch()
        hub = Hub(spool, pipeline, "--store", store, env={"BENCH_MARKS": str(marks)}).wait_ready()
        quiet = sample(spool, marks, args.samples)
        pruner, busy = prune_process(spool, store, "--dry-run", nice=10), []
        while pruner.poll() is None and len(busy) < args.samples:
            busy += sample(spool, marks, 1)
        pruner.wait()
        hub.stop()
        rows = [["idle hub", ms(median(quiet)), ms(iqr(quiet)), len(quiet), "1.00"],
                ["while a prune runs", ms(median(busy)), ms(iqr(busy)), len(busy), f"{ratio(median(busy), median(quiet)):.2f}"]]
        print_table("Dispatch latency (emit -> first line of a Python script), ms",
                    ["hub", "median", "IQR", "samples", "ratio"], rows)


def sample(spool, marks: Path, count: int) -> list[float]:
    found = []
    for _ in range(count):
        lines = len(marks.read_text().splitlines())
        started = time.time()
        trivialci.emit("probe", {}, spool=spool)
        wait_for(lambda: len(marks.read_text().splitlines()) > lines, 30, "the probe's first line")
        found.append(float(marks.read_text().splitlines()[-1]) - started)
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    year_args = commands.add_parser("year")
    year_args.add_argument("--days", type=int, default=365)
    year_args.add_argument("--pushes", type=int, default=50)
    year_args.add_argument("--tick", type=float, default=10.0)
    year_args.add_argument("--every", type=int, default=15, help="print a row every N days")
    for name in ("scale", "latency"):
        sub = commands.add_parser(name)
        sub.add_argument("--records", type=int, default=100_000)
        sub.add_argument("--jobs", type=int, default=20_000)
        sub.add_argument("--runs", type=int, default=3)
        sub.add_argument("--samples", type=int, default=200)
    args = parser.parse_args()
    {"year": year, "scale": scale, "latency": latency}[args.command](args)


if __name__ == "__main__":
    main()
