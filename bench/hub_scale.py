"""The hub's cost per event with 10,000 finished jobs in its history, against 10.

Two real hubs on the shipped pipeline (no --tick, so that only the events sent
here run) on spools prefilled in the real formats, fast and without fsync:
state/jobs/JOB.json, state/branches/, state/workers/w1.json and state/.built as
HubState writes them, and done/DAY/ with each job's events as the hub records
them (branch_update, work_status QUEUED, STARTING, BUILDING, PASSED or FAILED,
work_done, work_required: .json, .log, .result.json), on the days before
today. That the prefill is the real format is checked: state/ rebuilt from the
small spool's done/ by HubState.rebuild() is the same, file for file.

A worker "w1" exists only as files (its inbox, and a worker.json touched before
each cycle so that it counts as alive); the start_work events the hub hands it
pile up in its inbox. One cycle sends, one event at a time, what the flow sends
for a new job:

    work_status QUEUED      a new job: job file, queue entry, branch entry
    work_required           w1 idle -> the job is handed over (STARTING, start_work)
    work_status BUILDING
    work_status PASSED      final: out of the branch entry
    work_done               dispatch (nothing waits)
    tick                    lost workers, dispatch, boots

Each event is timed from just before trivialci.emit() until its .result.json
is in done/, and the hub is idle (its own follow-up events handled) before the
next one; the script's own duration is read from that .result.json. Rounds
alternate the two hubs in a seeded random order.

    .venv/bin/python bench/hub_scale.py
    .venv/bin/python bench/hub_scale.py --cycles 50 --history 10000 --small 10
"""

import argparse
import filecmp
import hashlib
import json
import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import trivialci  # noqa: E402
from trivialci.hub.state import HubState  # noqa: E402
from trivialci.jobs import new_job_id, seconds_between  # noqa: E402
from trivialci.spool.layout import hub_dir  # noqa: E402
from _util import PYTHON, ROOT, Hub, Scratch, median, ms, print_table, ratio, spread, verdict, \
    wait_for  # noqa: E402

REPO, KIND, WORKER = "/srv/git/app.git", "build", "w1"
BRANCHES = 100
CYCLE = ["work_status QUEUED", "work_required", "work_status BUILDING", "work_status PASSED", "work_done", "tick"]
GOAL_RATIO = 1.10
PIPELINE = ROOT / "pipeline"


# --- the prefill, in the real formats ------------------------------------------------

def iso(seconds: float) -> str:
    """As trivialci.jobs.iso_now() writes a time."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{int(seconds % 1 * 1e3):03d}Z"


def _stamp(seconds: float) -> str:
    return time.strftime("%Y%m%dT%H%M%S", time.gmtime(seconds)) + f".{int(seconds % 1 * 1e6):06d}Z"


def job_events(number: int, queued: float) -> tuple[dict, list[tuple[str, float, dict, str]]]:
    """The job record the hub ends with, and the events it handled for it: (type, handled, payload, log)."""
    job_id = new_job_id(queued)[:-6] + f"{number:06x}"
    branch = "main" if number % 4 == 0 else f"feature/f{number % BRANCHES}"
    sha = hashlib.sha1(f"commit {number}".encode()).hexdigest()
    status = "FAILED" if number % 10 == 3 else "PASSED"
    exit_code, reason = (0, "exit status 0") if status == "PASSED" else (1, "exit status 1")
    base = {"job": job_id, "attempt": 1}
    updates = [
        {**base, "repo": REPO, "branch": branch, "sha": sha, "kind": KIND, "params": {}, "request": None,
         "status": "QUEUED", "queued": iso(queued)},
        {"job": job_id, "status": "STARTING", "worker": WORKER, "attempt": 1, "dispatched": iso(queued + 0.1)},
        {**base, "status": "BUILDING", "worker": WORKER, "started": iso(queued + 0.4)},
        {**base, "status": status, "worker": WORKER, "ended": iso(queued + 30.4), "exit_code": exit_code,
         "reason": reason},
    ]
    job = {}
    for update in updates:
        job = {**job, **update}
    job["queue_wait"] = seconds_between(job.get("queued"), job.get("started"))
    job["run_time"] = seconds_between(job.get("started"), job.get("ended"))
    events = [("branch_update", queued - 0.05, {"repo": REPO, "branch": branch, "old": None, "new": sha},
               f"queued {job_id}: {branch} {sha[:12]} for {KIND}\n")]
    for offset, update in zip((0.02, 0.12, 0.45, 30.45), updates):
        events.append(("work_status", queued + offset, update,
                       f"{job_id}: {update['status']} (now {update['status']}, attempt 1)\n"))
    events.append(("work_done", queued + 30.5, {"job": job_id, "worker": WORKER, "status": status},
                   f"{WORKER} finished {job_id}: {status}\n"))
    events.append(("work_required", queued + 30.6, {"worker": WORKER, "kind": KIND}, ""))
    return job, events


def write_record(done: Path, event_type: str, handled: float, payload: dict, log: str, number: int) -> None:
    """One handled event as the hub records it: DAY/HHMMSS.ffffff-NAME.json, .log, .result.json."""
    day = done / time.strftime("%Y-%m-%d", time.gmtime(handled))
    stem = f"{event_type}.{_stamp(handled - 0.001)}.benchhost.4242.{number:06x}"
    prefix = time.strftime("%H%M%S", time.gmtime(handled)) + f".{int(handled % 1 * 1e6):06d}-{stem}"
    result = {"event": f"{stem}.json", "type": event_type, "id": f"{day.name}T{prefix}", "node": "hub",
              "attempt": 1, "status": "done", "reason": "exit status 0", "exit_code": 0, "signal": None,
              "script": str(PIPELINE / f"{event_type}.py"), "timeout": 3600.0,
              "started": _iso_us(handled), "ended": _iso_us(handled + 0.08), "duration": 0.08,
              "log": f"{prefix}.log"}
    (day / f"{prefix}.json").write_text(json.dumps(payload) + "\n")
    (day / f"{prefix}.log").write_text(log)
    (day / f"{prefix}.result.json").write_text(json.dumps(result, indent=2) + "\n")


def _iso_us(seconds: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{int(seconds % 1 * 1e6):06d}Z"


def _write_state(path: Path, record: dict) -> None:
    """As HubState._write lays a file out (without its fsync and rename: nothing reads it yet)."""
    path.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")


def prefill(spool: Path, jobs: int) -> None:
    """`jobs` finished jobs, one every 60 s, ending yesterday: state/ and done/ as the hub leaves them."""
    hub_dir(spool).create()
    state = spool / "state"
    for part in ("jobs", "branches", "workers"):
        (state / part).mkdir(parents=True)
    end = time.time() // 86400 * 86400 - 3600
    first = end - jobs * 60
    for day in range(int(first // 86400), int(end // 86400) + 1):
        (spool / "done" / time.strftime("%Y-%m-%d", time.gmtime(day * 86400))).mkdir(parents=True, exist_ok=True)
    branches = {}
    for number in range(jobs):
        job, events = job_events(number, first + number * 60)
        _write_state(state / "jobs" / f"{job['job']}.json", job)
        branches[job["branch"]] = {"repo": REPO, "branch": job["branch"], "jobs": []}
        for event_type, handled, payload, log in events:
            write_record(spool / "done", event_type, handled, payload, log, number)
    for branch, record in branches.items():
        _write_state(state / "branches" / f"{_branch_key(REPO, branch)}.json", record)
    _write_state(state / "workers" / f"{WORKER}.json", {"name": WORKER, "kind": KIND, "state": "idle", "job": None,
                                                         "since": iso(end)})
    _write_state(state / ".built", {"rebuilt": iso(end), "events": jobs * 5})
    os.sync()  # an old history is on disk already: its writeback must not land in the measurement


def _branch_key(repo: str, branch: str) -> str:
    return hashlib.sha1(f"{repo}\0{branch}".encode()).hexdigest()[:16]  # as trivialci.hub.state names it


def check_prefill(spool: Path, scratch: Path) -> bool:
    """Whether HubState.rebuild() of the prefilled done/ gives the prefilled jobs/ and branches/, byte for byte."""
    copy = scratch / "rebuilt"
    shutil.copytree(spool, copy)
    HubState(copy).rebuild()
    same = True
    for part in ("jobs", "branches"):
        names = sorted(os.listdir(spool / "state" / part))
        if names != sorted(os.listdir(copy / "state" / part)):
            return False
        _, mismatch, errors = filecmp.cmpfiles(spool / "state" / part, copy / "state" / part, names, shallow=False)
        same = same and not mismatch and not errors
    shutil.rmtree(copy)
    return same


# --- the hubs ----------------------------------------------------------------------

class ScaledHub:
    """A hub on a prefilled spool, with the files of a worker w1 that never runs."""

    def __init__(self, label: str, root: Path, history: int):
        self.label, self.history = label, history
        self.spool = root / "spool"
        started = time.monotonic()
        prefill(self.spool, history)
        self.prefill_seconds = time.monotonic() - started
        self.worker = self.spool / "workers" / WORKER
        for part in ("inbox", "tmp"):
            (self.worker / part).mkdir(parents=True)
        self.beat()
        self.hubwork = root / "hubwork"
        self.hub: Hub | None = None
        self.latency: dict[str, list[float]] = {name: [] for name in CYCLE}
        self.duration: dict[str, list[float]] = {name: [] for name in CYCLE}
        self.jobs_command: list[float] = []

    def start(self) -> None:
        self.hub = Hub(self.spool, PIPELINE, "--workdir", self.hubwork).wait_ready()

    def beat(self) -> None:
        """w1's heartbeat, fresh: the hub counts it alive (worker.json younger than LOST_AFTER)."""
        (self.worker / "worker.json").write_text(json.dumps({"node": WORKER, "kind": KIND, "worker": WORKER}) + "\n")

    def cycle(self, record: bool, timeout: float) -> None:
        self.beat()
        job_id = new_job_id()
        sha = hashlib.sha1(job_id.encode()).hexdigest()
        payloads = {
            "work_status QUEUED": {"job": job_id, "repo": REPO, "branch": "feature/bench", "sha": sha, "kind": KIND,
                                   "attempt": 1, "params": {}, "request": None, "status": "QUEUED",
                                   "queued": iso(time.time())},
            "work_required": {"worker": WORKER, "kind": KIND},
            "work_status BUILDING": {"job": job_id, "status": "BUILDING", "attempt": 1, "worker": WORKER,
                                     "started": iso(time.time())},
            "work_status PASSED": {"job": job_id, "status": "PASSED", "attempt": 1, "worker": WORKER,
                                   "ended": iso(time.time()), "exit_code": 0, "reason": "exit status 0"},
            "work_done": {"job": job_id, "worker": WORKER, "status": "PASSED"},
            "tick": {"at": time.time()},
        }
        for name in CYCLE:
            latency, duration = self.send(name.split()[0], payloads[name], timeout)
            if record:
                self.latency[name].append(latency)
                self.duration[name].append(duration)
        job = HubState(self.spool).job(job_id)
        if not job or job["status"] != "PASSED":
            raise RuntimeError(f"{self.label}: job {job_id} ended as {job and job['status']}, not PASSED")

    def send(self, event_type: str, payload: dict, timeout: float) -> tuple[float, float]:
        """(seconds from just before emit to the record in done/, the script's own duration)."""
        started = time.time()
        stem = trivialci.emit(event_type, payload, spool=self.spool).name[:-5]
        result = wait_for(lambda: self._result(stem), timeout, f"{self.label}: the record of {stem}", 0.001)
        latency = time.time() - started
        wait_for(self._idle, timeout, f"{self.label}: the hub to be idle", 0.002)
        return latency, result["duration"]

    def _result(self, stem: str) -> dict | None:
        day = self.spool / "done" / time.strftime("%Y-%m-%d", time.gmtime())
        for name in _listdir(day):
            if name.endswith(f"-{stem}.result.json"):
                return json.loads((day / name).read_text())
        if any(name.endswith(f"-{stem}.result.json") for day in _listdir(self.spool / "failed")
               for name in _listdir(self.spool / "failed" / day)):
            raise RuntimeError(f"{self.label}: {stem} failed; see {self.spool}/failed/\n{self.hub.stderr_tail()}")
        return None

    def _idle(self) -> bool:
        return not [n for n in _listdir(self.spool / "inbox") if not n.startswith(".")] \
            and not _listdir(self.spool / "work")

    def time_jobs_command(self) -> None:
        started = time.monotonic()
        subprocess.run([PYTHON, "-m", "trivialci", "jobs", "--spool", str(self.spool), "--json"], check=True,
                       stdout=subprocess.DEVNULL)
        self.jobs_command.append(time.monotonic() - started)


def _listdir(directory: Path) -> list[str]:
    try:
        return os.listdir(directory)
    except FileNotFoundError:
        return []


# --- the run -----------------------------------------------------------------------

def run(hubs: list[ScaledHub], args) -> None:
    shuffler = random.Random(args.seed)
    for number in range(args.warmup + args.cycles):
        for hub in shuffler.sample(hubs, len(hubs)):
            hub.cycle(record=number >= args.warmup, timeout=args.timeout)
    for _ in range(args.jobs_runs):
        for hub in shuffler.sample(hubs, len(hubs)):
            hub.time_jobs_command()


def report(small: ScaledHub, large: ScaledHub, format_ok: bool, args) -> None:
    print(f"\nprefill: {small.history} jobs in {small.prefill_seconds:.1f} s, {large.history} jobs in "
          f"{large.prefill_seconds:.1f} s (state/jobs, state/branches, done/: 7 events a job, 3 files each)")
    print(f"prefill format check (HubState.rebuild() of the small done/ gives the same state/ files): "
          f"{'same' if format_ok else 'DIFFERENT'}")
    rows = []
    for name in CYCLE:
        small_ms, large_ms = median(small.latency[name]), median(large.latency[name])
        rows.append([name, ms(small_ms), ms(large_ms), spread(large.latency[name], 1e3),
                     f"{ratio(large_ms, small_ms):.2f}", ms(median(small.duration[name])),
                     ms(median(large.duration[name])),
                     f"{ratio(median(large.duration[name]), median(small.duration[name])):.2f}"])
    everything = lambda hub, kind: [v for name in CYCLE for v in getattr(hub, kind)[name]]  # noqa: E731
    all_ratio = ratio(median(everything(large, "latency")), median(everything(small, "latency")))
    rows.append(["all events", ms(median(everything(small, "latency"))), ms(median(everything(large, "latency"))),
                 spread(everything(large, "latency"), 1e3), f"{all_ratio:.2f}",
                 ms(median(everything(small, "duration"))), ms(median(everything(large, "duration"))),
                 f"{ratio(median(everything(large, 'duration')), median(everything(small, 'duration'))):.2f}"])
    rows.append(["`trivialci jobs --json` (whole command)", ms(median(small.jobs_command)),
                 ms(median(large.jobs_command)), spread(large.jobs_command, 1e3),
                 f"{ratio(median(large.jobs_command), median(small.jobs_command)):.2f}", "-", "-", "-"])
    print_table(f"Per event, end to end through a real hub: emit -> .result.json in done/ "
                f"({args.cycles} cycles; medians, ms)",
                ["event", f"{small.history} jobs", f"{large.history} jobs", f"{large.history}: min-max",
                 "ratio", f"script {small.history}", f"script {large.history}", "ratio"], rows)
    print(f"\ngoal: per-event cost with {large.history} jobs within x{GOAL_RATIO:.2f} of {small.history} jobs: "
          f"median of all events x{all_ratio:.2f} -> {verdict(all_ratio <= GOAL_RATIO)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cycles", type=int, default=50, help="measured cycles per hub (each: 6 events)")
    parser.add_argument("--warmup", type=int, default=3, help="cycles per hub before measuring")
    parser.add_argument("--history", type=int, default=10000, help="finished jobs in the large hub's history")
    parser.add_argument("--small", type=int, default=10, help="finished jobs in the small hub's history")
    parser.add_argument("--jobs-runs", type=int, default=5, help="timed runs of `trivialci jobs` per hub")
    parser.add_argument("--timeout", type=float, default=30.0)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    with Scratch("trivialci-hubscale-") as root:
        hubs = []
        for label, size in (("small", args.small), ("large", args.history)):
            (root / label).mkdir()
            hubs.append(ScaledHub(label, root / label, size))
        format_ok = check_prefill(hubs[0].spool, root)
        try:
            for hub in hubs:
                hub.start()
            run(hubs, args)
        finally:
            for hub in hubs:
                if hub.hub:
                    hub.hub.stop()
        report(hubs[0], hubs[1], format_ok, args)


if __name__ == "__main__":
    main()
