"""Stage hand-off: from the last job of stage N recorded to the first job of stage N+1 started.

The real thing, as tests/test_stages_flow.py sets it up: a hub on the shipped
pipeline (--tick 0.2, a directory store) whose two workers (kinds build and
test, booted by the hub on a warm-up push) are idle; a repository with
`.trivialci/00-build`, which writes SIZE bytes into $TRIVIALCI_ARTIFACTS, and
`.trivialci/10-test`, whose first line writes `date +%s.%N` into its own
artifacts and which then reads the build's file from $TRIVIALCI_UPSTREAM/build/.

One sample is one push (a new commit, sent as a branch_update): the clock
starts when the build's job.json lands in the store (its mtime: the worker
writes it last, after log.txt and files/; then it reports PASSED) and stops at
two points of the test job:

    handed over   the test's record says it `started` (the worker took the package: the hub's
                  work_status -> queue -> dispatch -> start_work -> the worker's claim)
    first line    the test script's first line ran (also: checkout, the fetch of the build's
                  artifacts from the store into $TRIVIALCI_UPSTREAM, the sandbox)

with no artifacts (the baseline of the ratios), 1 MiB and 100 MiB. Pushes go
one at a time, the sizes interleaved, each once both jobs are PASSED and both
workers idle again. The floor of any fetch is measured in the same run: after
each push, a plain copy (shutil.copyfile) of the build's file from the store
into a temp directory on the same disk.

    .venv/bin/python bench/stages.py
    .venv/bin/python bench/stages.py --pushes 20
"""

import argparse
import calendar
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import trivialci  # noqa: E402
from _util import ROOT, Hub, Scratch, iqr, median, ms, percentile, print_table, ratio, spread, \
    wait_for  # noqa: E402
from trivialci.up import local_worker_pids  # noqa: E402

BUILD = """#!/bin/sh
size=$(cat bench-size)
[ "$size" -gt 0 ] && head -c "$size" /dev/zero > "$TRIVIALCI_ARTIFACTS/out.bin"
exit 0
"""
TEST = """#!/bin/sh
date +%s.%N > "$TRIVIALCI_ARTIFACTS/first-line.txt"
size=$(cat bench-size)
[ "$size" -eq 0 ] || [ "$(wc -c < "$TRIVIALCI_UPSTREAM/build/out.bin")" -eq "$size" ]
"""
SIZES = {"none": 0, "1 MiB": 1 << 20, "100 MiB": 100 << 20}


def git(*args, cwd):
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


class Bench:
    def __init__(self, root: Path):
        self.root, self.spool, self.store = root, root / "spool", root / "store"
        self.origin, self.work = root / "origin.git", root / "work"
        git("init", "-q", "--bare", "-b", "main", str(self.origin), cwd=root)
        git("init", "-q", "-b", "main", str(self.work), cwd=root)
        for key, value in (("user.email", "bench@example.invalid"), ("user.name", "bench")):
            git("config", key, value, cwd=self.work)
        (self.work / ".trivialci").mkdir()
        for name, text in (("00-build", BUILD), ("10-test", TEST)):
            (self.work / ".trivialci" / name).write_text(text)
            (self.work / ".trivialci" / name).chmod(0o755)
        self.hub = Hub(self.spool, ROOT / "pipeline", "--store", f"file://{self.store}", "--workdir",
                       root / "wd" / "hub", "--tick", "0.2").wait_ready()
        self.count = 0

    def push(self, size: int) -> dict:
        """One push of a build making `size` bytes; the build's and the test's records once both PASSED."""
        self.count += 1
        (self.work / "bench-size").write_text(f"{size}\n")
        git("add", "-A", cwd=self.work)
        git("commit", "-q", "--allow-empty", "-m", f"push {self.count}", cwd=self.work)
        sha = git("rev-parse", "HEAD", cwd=self.work)
        git("push", "-q", "-f", str(self.origin), "HEAD:main", cwd=self.work)
        trivialci.emit("branch_update", {"repo": str(self.origin), "branch": "main", "old": None, "new": sha},
                       to="hub", spool=self.spool)
        return wait_for(lambda: self._both(sha), 300, f"push {self.count} to pass")

    def _both(self, sha: str) -> dict | None:
        found = {}
        for path in self.store.glob("jobs/*/job.json"):
            record = json.loads(path.read_text())
            if record.get("sha") == sha:
                found[record["kind"]] = {**record, "_mtime": path.stat().st_mtime}
        if set(found) != {"build", "test"}:
            return None
        if any(record["status"] != "PASSED" for record in found.values()):
            raise RuntimeError(f"push {self.count}: {[(r['kind'], r['status'], r['reason']) for r in found.values()]}")
        return found if self._idle() else None

    def _idle(self) -> bool:
        workers = [json.loads(p.read_text()) for p in (self.spool / "state" / "workers").glob("*.json")]
        return len(workers) == 2 and all(worker["state"] == "idle" for worker in workers) \
            and not list((self.spool / "inbox").glob("*.json"))

    def sample(self, size: int) -> tuple[float, float, float]:
        """(recorded -> handed over, recorded -> first line, a plain copy of the build's file), in seconds."""
        jobs = self.push(size)
        recorded = jobs["build"]["_mtime"]
        first_line = float((self.store / "jobs" / jobs["test"]["job"] / "files" / "first-line.txt").read_text())
        return _epoch(jobs["test"]["started"]) - recorded, first_line - recorded, self._copy(jobs["build"]["job"])

    def _copy(self, job: str) -> float:
        source, target = self.store / "jobs" / job / "files" / "out.bin", self.root / "copy.bin"
        if not source.exists():
            return 0.0
        start = time.perf_counter()
        shutil.copyfile(source, target)
        elapsed = time.perf_counter() - start
        target.unlink()
        return elapsed

    def stop(self) -> None:
        self.hub.stop()
        for pid in local_worker_pids(self.spool):
            os.kill(pid, 15)


def _epoch(stamp: str) -> float:
    whole, _, fraction = stamp.rstrip("Z").partition(".")
    return calendar.timegm(time.strptime(whole, "%Y-%m-%dT%H:%M:%S")) + float("0." + fraction)


def run(pushes: int) -> dict[str, list[tuple[float, float]]]:
    samples = {name: [] for name in SIZES}
    with Scratch() as root:
        bench = Bench(root)
        try:
            bench.push(0)  # warm-up: boots both workers, warms the mirrors
            for _ in range(pushes):
                for name, size in SIZES.items():
                    samples[name].append(bench.sample(size))
        finally:
            bench.stop()
            wait_for(lambda: not local_worker_pids(bench.spool), 30, "the workers to stop")
    return samples


def report(samples: dict, pushes: int) -> None:
    base = {point: median([s[point] for s in samples["none"]]) for point in (0, 1, 2)}
    rows = []
    for name, values in samples.items():
        for point, label in ((0, "recorded -> handed over"), (1, "recorded -> first line"), (2, "cp (floor)")):
            series = [s[point] for s in values]
            rows.append([name, label, ms(median(series)), ms(percentile(series, 90)), ms(iqr(series)),
                         spread(series, 1e3, 1), f"{ratio(median(series), base[point]):.2f}" if point < 2 else "-"])
    print_table(f"Stage hand-off, {pushes} pushes per size (ms; ratio: to the same point with no artifacts)",
                ["artifacts", "from -> to", "p50", "p90", "iqr", "min-max", "ratio"], rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pushes", type=int, default=10, help="pushes per artifact size (at least 10)")
    args = parser.parse_args()
    report(run(max(args.pushes, 10)), max(args.pushes, 10))


if __name__ == "__main__":
    main()
