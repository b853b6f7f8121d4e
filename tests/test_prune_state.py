"""A prune and the hub's state: state/ rebuilt after a prune is the state it replaced; a prune killed anywhere
leaves no listed job without its log, and the next one finishes it."""

import json
import shutil
from pathlib import Path

import pytest
from conftest import run_cli
from test_prune import DAY, NOW, day_name, handled, iso, stored_job, tree

from trivialci.hub import HubState, eventlog
from trivialci.hub.checkpoint import CHECKPOINT
from trivialci.jobs import new_job_id
from trivialci.spool.layout import hub_dir
from trivialci.store import open_store

FOLDED = ("jobs", "queue", "workers", "branches")


class History:
    """Events of a busy hub over 100 days, recorded in done/DAY/ and folded into state/ as the hub does."""

    def __init__(self, spool, store):
        self.spool, self.store, self.root = spool, store, hub_dir(spool).root
        hub_dir(spool).create()
        self.state = HubState.open(spool)
        self.jobs, self.pending, self.finished = {}, [], []

    def event(self, days_ago, event_type, payload):
        self.pending.append((-days_ago, len(self.pending), event_type, payload))

    def record_all(self):
        """Record and fold the events in the order of their days, as a hub would have handled them."""
        for minus_days, _, event_type, payload in sorted(self.pending, key=lambda e: e[:2]):
            record = handled(self.root, -minus_days, event_type, payload)
            self.state.apply(event_type, payload, at=eventlog.iso_of_stamp(f"{record.parent.name}T{record.name[:13]}"))
        for name in self.finished:
            stored = self.state.job(self.jobs[name])
            self.store.put_bytes(f"jobs/{self.jobs[name]}/log.txt", f"log of {name}\n".encode())
            self.store.put_bytes(f"jobs/{self.jobs[name]}/job.json", json.dumps(stored).encode())

    def queue(self, name, days_ago, branch="main", kind="build"):
        job = new_job_id(NOW - days_ago * DAY)
        self.jobs[name] = job
        self.event(days_ago, "work_status", {"job": job, "status": "QUEUED", "repo": "/r", "branch": branch,
                                             "sha": "a" * 40, "kind": kind, "attempt": 1, "queued": iso(days_ago)})
        return job

    def run(self, name, days_ago, worker="w1", end=None):
        self.event(days_ago, "work_status", {"job": self.jobs[name], "status": "STARTING", "attempt": 1,
                                             "worker": worker, "started": iso(days_ago)})
        self.event(days_ago, "work_status", {"job": self.jobs[name], "status": "BUILDING", "attempt": 1,
                                             "worker": worker})
        if end:
            record = {"job": self.jobs[name], "status": end, "attempt": 1, "worker": worker, "ended": iso(days_ago)}
            self.event(days_ago, "work_status", record)
            self.finished.append(name)

    @classmethod
    def busy(cls, spool, store) -> "History":
        history = cls(spool, store)
        for n, days in enumerate((95, 90, 80, 70, 45, 38, 33, 20, 5, 1)):
            history.queue(f"done{n}", days, branch=f"b{n % 3}")
            history.run(f"done{n}", days, end="PASSED" if n % 2 else "FAILED")
        history.queue("gone_branch", 85, branch="feature/old")
        history.run("gone_branch", 85, end="PASSED")
        history.queue("still_queued", 60, kind="rare")
        history.queue("running", 50, kind="slow")
        history.run("running", 50, worker="w2")
        history.queue("lost", 40, kind="slow")
        history.event(40, "work_status", {"job": history.jobs["lost"], "status": "LOST", "attempt": 1})
        history.event(39, "work_required", {"worker": "w1", "kind": "build"})
        history.queue("late", 75)
        history.run("late", 75, end="PASSED")
        history.event(10, "work_status", {"job": history.jobs["late"], "status": "PASSED", "attempt": 1,
                                          "worker": "w1"})  # a duplicate report, long after
        for day in range(100, 0, -3):
            history.event(day, "tick", {})
        history.record_all()
        return history


def state_files(spool) -> dict:
    """The fold's files under state/, as objects (a worker's `since` included: the time of the event's claim)."""
    root = hub_dir(spool).state
    return {str(path.relative_to(root)): json.loads(path.read_text()) for part in FOLDED
            for path in sorted((root / part).rglob("*.json"))}


@pytest.fixture
def store(tmp_path):
    (tmp_path / "store").mkdir()
    return open_store((tmp_path / "store").as_uri())


def prune(spool, store, env=None):
    return run_cli("prune", "--spool", spool, "--store", store.url, "--keep-days", "30", "--keep-last", "1", env=env)


def test_state_rebuilt_after_a_prune_equals_the_state_it_replaced(spool, store):
    history = History.busy(spool, store)
    result = prune(spool, store)
    assert result.returncode == 0, result.stderr
    assert not any((spool / "done" / day_name(d)).exists() for d in (95, 45, 33))
    checkpoint = json.loads((spool / CHECKPOINT).read_text())
    assert checkpoint["through"] == day_name(31), "the newest day folder older than 30 days (a tick)"
    live = state_files(spool)
    shutil.rmtree(spool / "state")
    assert state_files(spool) == {}
    HubState.open(spool)
    assert state_files(spool) == live
    jobs = {name: live.get(f"jobs/{history.jobs[name]}.json", {}).get("status") for name in history.jobs}
    assert jobs["still_queued"] == "QUEUED" and jobs["running"] == "BUILDING" and jobs["lost"] == "LOST"
    assert jobs["late"] == "PASSED", "mentioned by a later event: kept"
    assert jobs["done0"] is None and jobs["gone_branch"] is None, "finished long ago: only in the store now"
    assert jobs["done8"] == "FAILED", "finished within the window: still in state/"
    assert HubState(spool).queued("rare") == [history.jobs["still_queued"]]
    assert not any("feature/old" in json.dumps(record) for path, record in live.items() if path.startswith("br"))


def test_state_rebuilt_after_two_prunes_a_day_apart_equals_the_live_one(spool, store):
    History.busy(spool, store)
    assert prune(spool, store).returncode == 0
    record = handled(spool, 0, "work_required", {"worker": "w3", "kind": "build"})
    HubState(spool).apply("work_required", {"worker": "w3", "kind": "build"},
                          at=eventlog.iso_of_stamp(f"{record.parent.name}T{record.name[:13]}"))
    later = run_cli("prune", "--spool", spool, "--store", store.url, "--keep-days", "15", "--keep-last", "1")
    assert later.returncode == 0, later.stderr
    assert json.loads((spool / CHECKPOINT).read_text())["through"] == day_name(16)
    live = state_files(spool)
    shutil.rmtree(spool / "state")
    HubState.open(spool)
    assert state_files(spool) == live


def test_jobs_shows_finished_jobs_that_left_the_state_from_the_store(spool, store):
    history = History.busy(spool, store)
    assert prune(spool, store).returncode == 0
    shown = run_cli("jobs", "--spool", spool, "--store", store.url)
    assert shown.returncode == 0, shown.stderr
    assert history.jobs["done7"] in shown.stdout, "in the store, no longer in state/"
    assert history.jobs["done9"] in shown.stdout


STEPS = ["prune-checkpointed", "prune-days-removed", "prune-records-deleted", "prune-job-removed"]


@pytest.mark.parametrize("step", STEPS)
@pytest.mark.parametrize("backend", ["directory", "s3"])
def test_a_prune_killed_at_each_step_hides_no_log_and_the_next_one_finishes(step, backend, spool, tmp_path, request):
    if backend == "s3":
        request.getfixturevalue("s3_env")
        store = open_store(f"s3://{request.getfixturevalue('s3_server').new_bucket()}/ci")
    else:
        store = open_store((tmp_path / "store").as_uri())
    History.busy(spool, store)
    old = [stored_job(store, 200 + n, "x", files=2) for n in range(5)]
    killed = prune(spool, store, env={"TRIVIALCI_TEST_CRASH_AT": step})
    assert killed.returncode == -9, killed.stderr
    for job in run_cli("history", "list", "--limit", "500", "--store", store.url).stdout.splitlines()[1:]:
        job_id = job.split()[0]
        assert run_cli("history", "log", job_id, "--store", store.url).returncode == 0, f"{job_id} has no log"
    live = state_files(spool)
    shutil.rmtree(spool / "state")
    HubState.open(spool)
    assert state_files(spool) == live, "a state rebuilt after a killed prune is the state it replaced"
    again = prune(spool, store)
    assert again.returncode == 0, again.stderr
    left = set(store.list_children("jobs/"))
    assert not left & set(old[1:]) and old[0] in left, "the next prune finished the jobs the killed one began"
    assert not any((spool / "done" / day_name(d)).exists() for d in (95, 45, 33))
