"""A hub of many busy workers: what a job's end costs the hub when jobs wait and every worker is building.

A real hub on the shipped pipeline (no --tick), on a fresh spool per fleet
size: FLEET workers exist as files (node directory, fresh worker.json), FLEET
+ 1 jobs are queued before the hub starts (queue_job, as branch_update does),
then every worker asks for work once: each takes a job and, never answering,
stays busy; one job waits. One sample is a `work_done` (what a worker sends
when its job ended; its script dispatches what waits to idle workers: there
are none), timed from just before trivialci.emit() until its .result.json is in
done/, with the script's own duration read from that file. The baseline is a
fleet of 10 in the same run; the ratio says how the cost grows with the fleet
(a dispatch that reads every worker's file grows with it; one that reads
state/idle/ does not).

    .venv/bin/python bench/busy_fleet.py
    .venv/bin/python bench/busy_fleet.py --fleets 10,1000 --samples 40
"""

import argparse
import json
import os
import socket
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import trivialci  # noqa: E402
from trivialci.hub import HubState, queue_job  # noqa: E402
from trivialci.jobs import new_job_id  # noqa: E402
from trivialci.spool.heartbeat import write_heartbeat  # noqa: E402
from trivialci.spool.layout import hub_dir, worker_dir  # noqa: E402
from _util import ROOT, Hub, Scratch, median, print_table, ratio, spread, wait_for  # noqa: E402

KIND = "build"


def prefill(spool: Path, fleet: int) -> None:
    hub_dir(spool).create()
    state = HubState.open(spool)
    for number in range(fleet + 1):
        queue_job(state, {"job": new_job_id(), "repo": "/srv/git/app.git", "branch": f"b{number}", "sha": "a" * 40,
                          "kind": KIND, "attempt": 1, "params": {}, "request": None})
    for name in names(fleet):
        worker_dir(spool, name).create()
    beat(spool, fleet)


def names(fleet: int) -> list[str]:
    return [f"w{number:04d}" for number in range(fleet)]


def beat(spool: Path, fleet: int) -> None:
    for name in names(fleet):
        write_heartbeat(worker_dir(spool, name), {"node": name, "kind": KIND, "worker": name,
                                                  "host": socket.gethostname(), "pid": os.getpid()})


def idle(spool: Path) -> bool:
    waiting = [n for n in os.listdir(spool / "inbox") if n.endswith(".json")]
    claimed = [n for n in os.listdir(spool / "work") if ".json" in n]
    return not waiting and not claimed


def busy_workers(spool: Path) -> int:
    state = HubState(spool)
    return sum(1 for worker in state.workers() if worker["state"] == "busy")


def sample(spool: Path, worker: str) -> tuple[float, float]:
    """(emit -> recorded, the script's own run) in seconds, of one work_done."""
    started = time.monotonic()
    path = trivialci.emit("work_done", {"job": new_job_id(), "worker": worker, "status": "PASSED"}, spool=spool)
    wait_for(lambda: _recorded(spool, path.name), 60, f"{path.name} to be recorded", interval=0.001)
    total = time.monotonic() - started
    result = _result_of(spool, path.name)
    return total, _seconds(result["ended"]) - _seconds(result["started"])


def _recorded(spool: Path, name: str) -> bool:
    """Out of inbox/ and work/ (small directories: done/ holds thousands of files here, read once after)."""
    stem = name[:-len(".json")]
    return not os.path.exists(spool / "inbox" / name) and not any(stem in n for n in os.listdir(spool / "work"))


def _result_of(spool: Path, name: str) -> dict | None:
    stem = name[:-len(".json")]
    for day in sorted((spool / "done").iterdir(), reverse=True):
        for entry in os.listdir(day):
            if entry.endswith(f"-{stem}.result.json"):
                return json.loads((day / entry).read_text())
    return None


def _seconds(stamp: str) -> float:
    whole, _, fraction = stamp.rstrip("Z").partition(".")
    return time.mktime(time.strptime(whole, "%Y-%m-%dT%H:%M:%S")) + float("0." + fraction)


def measure(tmp: Path, fleet: int, samples: int) -> dict:
    root = tmp / f"fleet-{fleet}"
    spool = root / "spool"
    root.mkdir()
    prefill(spool, fleet)
    hub = Hub(spool, ROOT / "pipeline", "--store", f"file://{root / 'store'}", "--workdir", root / "work")
    try:
        hub.wait_ready()
        wait_for(lambda: idle(spool), 600, "the hub to handle the queued jobs")
        for name in names(fleet):
            trivialci.emit("work_required", {"worker": name, "kind": KIND}, spool=spool)
        wait_for(lambda: idle(spool), 600, "every worker to take a job")
        if busy_workers(spool) != fleet or len(HubState(spool).queued(KIND)) != 1:
            raise RuntimeError(f"expected {fleet} busy workers and one queued job:\n{hub.stderr_tail()}")
        totals, runs = [], []
        for number in range(samples):
            if number % 10 == 0:
                beat(spool, fleet)
            total, run = sample(spool, names(fleet)[number % fleet])
            totals.append(total)
            runs.append(run)
            wait_for(lambda: idle(spool), 60, "the hub to be idle")
        return {"total": totals, "run": runs}
    finally:
        hub.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fleets", default="10,1000", help="fleet sizes; the first is the baseline [10,1000]")
    parser.add_argument("--samples", type=int, default=30, help="work_done events per fleet [30]")
    parser.add_argument("--dir", default=None, help="where the spools go [a temp directory]")
    args = parser.parse_args()
    fleets = [int(size) for size in args.fleets.split(",")]
    print(f"busy fleet: {sys.executable}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}")
    results = {}
    with Scratch(directory=args.dir) as tmp:
        for fleet in fleets:
            results[fleet] = measure(tmp, fleet, args.samples)
            print(f"  {fleet} workers: {median(results[fleet]['total']) * 1e3:.2f} ms per work_done")
    baseline = median(results[fleets[0]]["total"])
    rows = [[f"{fleet} busy workers" + (" (baseline)" if fleet == fleets[0] else ""),
             f"{median(r['total']) * 1e3:.2f}", spread(r["total"], 1e3), f"{median(r['run']) * 1e3:.2f}",
             spread(r["run"], 1e3), f"{ratio(median(r['total']), baseline):.2f}x"] for fleet, r in results.items()]
    print_table(f"a job's end (work_done) while one job waits, {args.samples} samples, ms",
                ["fleet", "emit -> recorded", "min-max", "script run", "min-max", "vs baseline"], rows)


if __name__ == "__main__":
    main()
