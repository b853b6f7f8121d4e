"""Property: whatever happened, state/ rebuilt from the event log equals the state it replaced.

Hypothesis draws sequences of what happens to a hub: pushes of two kinds on three
branches (in one stage, or in two: .trivialci/NN-KIND), rebuilds (with the later stages or not), three workers that ask for work, build, finish, die and restart (a new
pid), cancels, a person's rm of queue entries and touch/rm of state/PAUSE,
ticks, time passing (hours, days) and prunes that fold old days into the
checkpoint, with the hub handling its inbox only now and then, so that a
worker's report may wait while the hub decides things. A real HubState, the
shipped pipeline scripts (run in this process by tests/hubsim.py) and a real
spool. Now and then state/ is deleted while events the hub applied wait in its
inbox, and rebuilt: it must be the state it replaced. After each sequence (and
a last tick, which records the hand edits not yet recorded) state/ is compared with a rebuild in a temporary directory
(`trivialci state verify`'s comparison), then deleted and rebuilt in place, and
compared again: jobs, queue (names, so order), workers (with `since`), branches,
paused.json and PAUSE must be identical. And a job a person removed from the
queue while it was QUEUED is never handed to a worker.

CI runs a fixed set of examples (the "ci" profile of tests/conftest.py:
derandomized, bounded in time). For a longer run with fresh random examples:

    .venv/bin/pytest tests/test_rebuild_property.py --hypothesis-profile=long
"""

import json
import shutil
import tempfile
from pathlib import Path

from hubsim import SimulatedHub, assert_rebuilt_equals_live, beat
from hypothesis import example, given
from hypothesis import strategies as st

import trivialci
from trivialci.hub import HubState, RetentionPolicy, prune
from trivialci.hub.verify import fold_files
from trivialci.spool.layout import worker_dir

WORKERS = {"w1": "build", "w2": "build", "w3": "test"}
BRANCHES = ["main", "feature/a", "feature/b"]
START = 1_790_000_000.0  # 2026-09-22: a fixed day, so derandomized runs are the same runs

ops = st.one_of(
    st.tuples(st.just("push"), st.sampled_from(BRANCHES), st.sampled_from([("build",), ("test",), ("build", "test"),
                                                                            ("build", "10-test"), ("05-test", "07-build")])),
    st.tuples(st.just("rebuild"), st.integers(0, 20), st.booleans()),
    st.tuples(st.just("worker_up"), st.sampled_from(sorted(WORKERS))),
    st.tuples(st.just("worker_dies"), st.sampled_from(sorted(WORKERS))),
    st.tuples(st.just("start"), st.sampled_from(sorted(WORKERS))),
    st.tuples(st.just("finish"), st.sampled_from(sorted(WORKERS)), st.booleans()),
    st.tuples(st.just("cancel"), st.integers(0, 20)),
    st.tuples(st.just("rm_entry"), st.integers(0, 20)),
    st.tuples(st.just("touch_pause"), st.sampled_from(["", "db migration\nsecond line"])),
    st.tuples(st.just("rm_pause")),
    st.tuples(st.just("emit_pause"), st.booleans()),
    st.tuples(st.just("tick")),
    st.tuples(st.just("handle"), st.integers(1, 12)),
    st.tuples(st.just("later"), st.sampled_from([0.5, 600.0, 5 * 3600.0, 2 * 86400.0])),
    st.tuples(st.just("prune"), st.integers(1, 3)),
    st.tuples(st.just("rebuild_now")),
)


class Flow:
    """The world around the hub: workers as the shipped start_work.py reports, a person at the shell."""

    def __init__(self, spool: Path):
        self.spool, self.hub = spool, SimulatedHub(spool, START)
        self.pids, self.current, self.started = {}, {}, []  # started: (job, attempt) of every start_work taken
        self.removed = []  # (job, attempt) a person removed from the queue while it was QUEUED
        self.sha = 0

    def run(self, op: tuple) -> None:
        getattr(self, op[0])(*op[1:])

    def push(self, branch, kinds):
        self.sha += 1
        self.emit("branch_update", {"repo": "/srv/git/app.git", "branch": branch, "old": None,
                                    "new": f"{self.sha:040x}", "kinds": list(kinds)})

    def worker_up(self, name):
        self.pids[name] = self.pids.get(name, 100) + 1
        self.current.pop(name, None)
        beat(self.spool, name, self.pids[name], alive=True)
        self.emit("work_required", {"worker": name, "kind": WORKERS[name]})

    def worker_dies(self, name):
        if name in self.pids:
            beat(self.spool, name, self.pids[name], alive=False)

    def start(self, name):
        inbox = worker_dir(self.spool, name).inbox
        offers = sorted(inbox.glob("start_work.*.json")) if inbox.is_dir() else []
        if not offers or name in self.current:
            return
        package = json.loads(offers[0].read_text())
        offers[0].unlink()
        self.current[name] = package
        self.started.append((package["job"], package["attempt"]))
        self.report(name, "BUILDING", started="2026-09-22T00:00:00.000Z")

    def finish(self, name, passed):
        package = self.current.pop(name, None)
        if package is None:
            return
        status, reason = ("PASSED", "exit status 0") if passed else ("FAILED", "exit status 1")
        for stop in sorted(worker_dir(self.spool, name).inbox.glob("cancel_work.*.json")):
            asked = json.loads(stop.read_text())
            stop.unlink()
            if asked["job"] == package["job"]:
                status, reason = asked["status"], asked["reason"]
        self.report(name, status, package, ended="2026-09-22T00:01:00.000Z", reason=reason)
        self.emit("work_done", {"job": package["job"], "worker": name, "status": status})
        self.emit("work_required", {"worker": name, "kind": WORKERS[name], "after": package["job"],
                                    "attempt": package["attempt"]})

    def report(self, name, status, package=None, **fields):
        package = package or self.current[name]
        self.emit("work_status", {"job": package["job"], "status": status, "attempt": package["attempt"],
                                  "worker": name, **fields})

    def rebuild(self, index, downstream):
        jobs = sorted(path.stem for path in (self.spool / "state" / "jobs").glob("*.json"))
        if jobs:
            self.emit("rebuild", {"job": jobs[index % len(jobs)], "downstream": downstream})

    def cancel(self, index):
        jobs = sorted(path.stem for path in (self.spool / "state" / "jobs").glob("*.json"))
        if jobs:
            self.emit("cancel", {"job": jobs[index % len(jobs)]})

    def rm_entry(self, index):
        entries = sorted((self.spool / "state" / "queue").glob("*/*.json"))
        if not entries:
            return
        entry = entries[index % len(entries)]
        job = HubState(self.spool).job(entry.name.split(".")[1])
        entry.unlink()
        if job and job["status"] == "QUEUED":
            self.removed.append((job["job"], job["attempt"]))

    def touch_pause(self, text):
        (self.spool / "state").mkdir(exist_ok=True)
        (self.spool / "state" / "PAUSE").write_text(text)

    def rm_pause(self):
        (self.spool / "state" / "PAUSE").unlink(missing_ok=True)

    def emit_pause(self, pausing):
        self.emit("pause" if pausing else "resume", {"reason": "by trivialci emit"})

    def tick(self):
        self.emit("tick", {})

    def handle(self, count):
        self.hub.handle(count)

    def later(self, seconds):
        self.hub.advance(seconds)

    def prune(self, keep_days):
        prune(self.spool, None, RetentionPolicy(keep_days=keep_days, keep_failed_days=keep_days), now=self.hub.clock)

    def rebuild_now(self):
        """A tick handled ahead of the backlog (it records the hand edits), then `rm -rf state/` while events the
        hub applied are still in its inbox: the rebuilt state/ is the state it replaced."""
        self.hub.handle_file(trivialci.emit("tick", {}, to="hub", spool=self.spool).name)
        live = fold_files(self.spool / "state")
        shutil.rmtree(self.spool / "state")
        HubState.open(self.spool)
        assert fold_files(self.spool / "state") == live

    def emit(self, event_type, payload):
        trivialci.emit(event_type, payload, to="hub", spool=self.spool)

    def settle(self):
        """Handle everything, then one more tick: the hand edits not yet recorded are recorded."""
        self.hub.drain()
        self.tick()
        self.hub.drain()

    def handed_over(self) -> set:
        """(job, attempt) of every start_work the hub sent: taken by a worker, or still in its inbox."""
        waiting = {(p["job"], p["attempt"]) for p in map(lambda f: json.loads(f.read_text()),
                                                         self.spool.glob("workers/*/inbox/start_work.*.json"))}
        return waiting | set(self.started)


@given(st.lists(ops, min_size=1, max_size=60))
@example([("tick",), ("touch_pause", ""), ("emit_pause", False), ("handle", 1), ("handle", 1), ("later", 172800.0)])
@example([("push", "main", ("build",)), ("touch_pause", ""), ("emit_pause", False), ("handle", 2), ("later", 172800.0),
          ("prune", 1)])
def test_state_rebuilt_from_the_event_log_equals_the_live_state(sequence):
    """The examples, found by long runs: a pause the hub recorded (for a PAUSE made by hand) handled two days after
    its cause, a person's resume between them; the same with the cause's day folded into the checkpoint while the
    pause still waited (it came after the resume in the rebuild: the hub was paused again)."""
    with tempfile.TemporaryDirectory() as scratch:
        flow = Flow(Path(scratch) / "spool")
        for op in sequence:
            flow.run(op)
        flow.settle()
        assert_rebuilt_equals_live(flow.spool)
        assert not set(flow.removed) & flow.handed_over(), "a job removed from the queue by hand was handed out"
