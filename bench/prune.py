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

scale: RECORDS handled events in the hub's done/ over 60 days and JOBS jobs over
200 days in a directory store, then in an S3 store (moto's server on 127.0.0.1;
--stores directory to skip it), then `trivialci prune` (a real process):
--dry-run RUNS times (median, spread), then the real run once; the ratio to the
directory store's figures.

latency: dispatch latency of a serving hub (emit -> first line of a Python
script, as bench/dispatch_latency.py) with and without a real `trivialci prune`
of the scale data set (directory store) running beside it at nice 10 (as
pipeline/prune.py runs); the ratio of the medians.

--dir DIR puts the scratch spool and store there (e.g. /dev/shm, a tmpfs).
"""

import argparse
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import trivialci  # noqa: E402
from trivialci.hub import HubState, RetentionPolicy, prune  # noqa: E402
from trivialci.spool.layout import hub_dir, worker_dir  # noqa: E402
from trivialci.store import open_store  # noqa: E402
from _util import (PYTHON, Hub, Scratch, iqr, median, ms, percentile, print_table, ratio, spread, wait_for,  # noqa: E402
                   write_script)  # noqa: E402

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
    with Scratch(directory=args.dir) as tmp:
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
        if args.days >= 90:  # flat means the last month's prunes cost what the first full month's did
            first, last = prune_times[30:60], prune_times[-30:]
            print(f"days 31-60: median {median(first):.2f} s (IQR {iqr(first):.2f}); last 30 days: median "
                  f"{median(last):.2f} s (IQR {iqr(last):.2f}); ratio {ratio(median(last), median(first)):.2f}")


def _year_row(day, spool, store_dir, seconds) -> list:
    spool_files, spool_bytes = usage(spool)
    state_files, _ = usage(spool / "state")
    store_files, store_bytes = usage(store_dir)
    return [day + 1, spool_files, f"{spool_bytes / 2**20:.1f}", state_files, store_files,
            f"{store_bytes / 2**20:.1f}", f"{seconds:.2f}"]


def fill_records(spool: Path, records: int, now: float) -> Path:
    """RECORDS handled events over 60 days in the hub's done/ (two thirds of them ticks)."""
    hub_dir(spool).create()
    recorder = Recorder()
    for n in range(records):
        t = now - 60 * DAY + n * (60 * DAY / records)
        recorder.record(spool, t, "tick" if n % 3 else "hello", {"n": n})
    return spool


def scale_jobs(jobs: int, now: float):
    """(key, value) of JOBS finished jobs over 200 days on 10 branches: files/out.bin, log.txt, then job.json."""
    for n in range(jobs):
        t = now - 200 * DAY + n * (200 * DAY / jobs)
        job = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(t)) + f"-{n:06x}"
        record = {"job": job, "repo": "/srv/repo", "branch": f"b{n % 10}", "kind": "build", "status": "PASSED",
                  "sha": "a" * 40, "ended": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(t))}
        yield f"jobs/{job}/files/out.bin", b"x" * 1024
        yield f"jobs/{job}/log.txt", b"log\n" * 100
        yield f"jobs/{job}/job.json", json.dumps(record).encode()


def fill_directory_store(directory: Path, jobs: int, now: float) -> str:
    """The jobs written as the directory store lays them out (plain writes: filling is not what is timed)."""
    for key, value in scale_jobs(jobs, now):
        path = directory / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(value)
    return directory.as_uri()


def fill_s3_store(tmp: Path, jobs: int, now: float) -> str:
    """The jobs PUT into a bucket of a moto S3 server started for this run (32 PUTs in flight)."""
    from store_upload import s3_store  # boto3 and moto only when S3 is asked for

    store = s3_store(tmp)
    with ThreadPoolExecutor(32) as pool:
        for done in [pool.submit(store.put_bytes, key, value) for key, value in scale_jobs(jobs, now)]:
            done.result()
    return store.url


def fill_scale(tmp: Path, records: int, jobs: int, now: float) -> tuple[Path, str]:
    """RECORDS events in the hub's done/, JOBS jobs in a directory store."""
    return fill_records(tmp / "spool", records, now), fill_directory_store(tmp / "store", jobs, now)


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
    rows = []
    with Scratch(directory=args.dir) as tmp:
        for backend in args.stores.split(","):
            for row in scale_rows(tmp / backend, backend, args):
                print(*row, flush=True)
                rows.append(row)
    print_table(f"Prune of {args.records} records in done/ and {args.jobs} jobs in the store "
                f"(keep 30 days, last 20; {args.runs} dry runs, then one real run)",
                ["store", "run", "median s", "spread s", "runs", "ratio to the first store's"], rows)


def scale_rows(tmp: Path, backend: str, args) -> list[list]:
    started, now = time.perf_counter(), time.time()
    tmp.mkdir()
    spool = fill_records(tmp / "spool", args.records, now)
    store = fill_directory_store(tmp / "store", args.jobs, now) if backend == "directory" else \
        fill_s3_store(tmp, args.jobs, now)
    print(f"{backend}: filled {args.records} records and {args.jobs} jobs in {time.perf_counter() - started:.0f} s",
          flush=True)
    dry = [timed(prune_process(spool, store, "--dry-run")) for _ in range(args.runs)]
    real = timed(prune_process(spool, store))
    kept = len(open_store(store).list_children("jobs/"))
    SCALE_BASELINE.setdefault("--dry-run", median(dry))
    SCALE_BASELINE.setdefault("real", real)
    return [[backend, "--dry-run", f"{median(dry):.2f}", spread(dry), len(dry),
             f"{ratio(median(dry), SCALE_BASELINE['--dry-run']):.2f}"],
            [backend, f"real ({args.jobs - kept} jobs went)", f"{real:.2f}", "-", 1,
             f"{ratio(real, SCALE_BASELINE['real']):.2f}"]]


SCALE_BASELINE: dict[str, float] = {}  # the first store's figures (the directory store's, by default)


PROBE = """import time; FIRST_LINE = time.time()
import os
with open(os.environ["BENCH_MARKS"], "a") as marks:
    marks.write(f"{FIRST_LINE!r}\\n")
"""


def latency(args) -> None:
    with Scratch(directory=args.dir) as tmp:
        spool, store = fill_scale(tmp / "data", args.records, args.jobs, time.time())
        pipeline, marks = tmp / "pipeline", tmp / "marks"
        write_script(pipeline, "probe.py", PROBE)
        marks.touch()
        hub = Hub(spool, pipeline, "--store", store, env={"BENCH_MARKS": str(marks)}).wait_ready()
        quiet = sample(spool, marks, args.samples)
        pruner, busy = prune_process(spool, store, nice=10), []  # a real prune, niced as pipeline/prune.py is
        while pruner.poll() is None and len(busy) < args.samples:
            busy += sample(spool, marks, 1)
        pruned = timed(pruner)
        hub.stop()
        rows = [latency_row("idle hub", quiet, quiet), latency_row("while a prune runs", busy, quiet)]
        print_table(f"Dispatch latency (emit -> first line of a Python script), ms; the prune beside it: "
                    f"{args.records} records, {args.jobs} jobs, at nice 10", ["hub", "median", "IQR", "p10-p90",
                                                                             "samples", "ratio"], rows)
        print(f"(the prune took {pruned:.1f} s after the hub's last sample beside it)")


def latency_row(name: str, values: list[float], baseline: list[float]) -> list:
    return [name, ms(median(values)), ms(iqr(values)), f"{ms(percentile(values, 10))}-{ms(percentile(values, 90))}",
            len(values), f"{ratio(median(values), median(baseline)):.2f}"]


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
        if name == "scale":
            sub.add_argument("--stores", default="directory,s3",
                             help="directory, s3 (a moto server on 127.0.0.1) or both, comma-separated")
        sub.add_argument("--records", type=int, default=100_000)
        sub.add_argument("--jobs", type=int, default=20_000)
        sub.add_argument("--runs", type=int, default=3)
        sub.add_argument("--samples", type=int, default=200)
    for sub in (year_args, *(commands.choices[name] for name in ("scale", "latency"))):
        sub.add_argument("--dir", help="where the scratch spool and store go (e.g. /dev/shm, a tmpfs); "
                                       "default: the system's temp directory")
    args = parser.parse_args()
    {"year": year, "scale": scale, "latency": latency}[args.command](args)


if __name__ == "__main__":
    main()
