"""state/idle/: the index of idle workers, so that a dispatch on a hub of many busy workers reads few files.

In-process hub (tests/hubsim.py) on a real spool: the shipped scripts, real files.
"""

import os
from pathlib import Path

from hubsim import SimulatedHub, assert_rebuilt_equals_live, beat

import trivialci
from trivialci.hub import HubState

WORKERS = 120


def push(spool: Path, number: int) -> None:
    trivialci.emit("branch_update", {"repo": "/srv/app.git", "branch": f"b{number}", "old": None,
                                     "new": f"{number + 1:040x}", "kinds": ["build"]}, spool=spool)


def busy_fleet(spool: Path) -> SimulatedHub:
    """WORKERS workers, every one building a job, and one more job queued behind them."""
    hub = SimulatedHub(spool, 1_790_000_000.0)
    for number in range(WORKERS):
        beat(spool, f"w{number:03d}", 7, alive=True)
        trivialci.emit("work_required", {"worker": f"w{number:03d}", "kind": "build"}, spool=spool)
    for number in range(WORKERS + 1):
        push(spool, number)
    hub.drain()
    return hub


def one_idle_worker(spool: Path) -> SimulatedHub:
    """A hub whose one worker, w1, asked for work and waits."""
    hub = SimulatedHub(spool, 1_790_000_000.0)
    beat(spool, "w1", 7, alive=True)
    trivialci.emit("work_required", {"worker": "w1", "kind": "build"}, spool=spool)
    hub.drain()
    return hub


def worker_reads(monkeypatch) -> list[str]:
    """The names of the worker files HubState reads from now on."""
    reads = []
    original = HubState.worker

    def counted(self, name):
        reads.append(name)
        return original(self, name)
    monkeypatch.setattr(HubState, "worker", counted)
    return reads


def test_a_push_and_a_job_end_on_a_hub_of_busy_workers_read_no_worker_file(spool, monkeypatch):
    hub = busy_fleet(spool)
    state = HubState.open(spool)
    assert os.listdir(spool / "state" / "idle") == [] and len(state.queued("build")) == 1
    reads = worker_reads(monkeypatch)
    push(spool, WORKERS + 1)
    hub.drain()
    assert len(HubState(spool).queued("build")) == 2, "queued behind the busy fleet"
    assert len(reads) <= 1, f"no worker's file for the dispatch, one to know the kind has a worker: {reads}"

    busy = state.worker("w007")
    trivialci.emit("work_status", {"job": busy["job"], "attempt": 1, "worker": "w007", "status": "PASSED"},
                   spool=spool)
    trivialci.emit("work_done", {"job": busy["job"], "worker": "w007", "status": "PASSED"}, spool=spool)
    hub.drain()
    assert len(reads) <= 2, f"a job's end reads its own worker's file at most: {reads}"
    trivialci.emit("work_required", {"worker": "w007", "kind": "build", "after": busy["job"], "attempt": 1},
                   spool=spool)
    hub.drain()
    assert HubState(spool).worker("w007")["state"] == "busy", "the free worker took the oldest queued job"
    assert_rebuilt_equals_live(spool)


def test_an_idle_worker_is_in_the_index_and_a_push_goes_to_it(spool):
    hub = one_idle_worker(spool)
    assert os.listdir(spool / "state" / "idle") == ["w1"]
    push(spool, 1)
    hub.drain()
    assert os.listdir(spool / "state" / "idle") == [] and HubState(spool).worker("w1")["state"] == "busy"
    assert_rebuilt_equals_live(spool)


def test_a_state_from_before_the_index_is_given_one_when_the_hub_opens_it(spool):
    hub = one_idle_worker(spool)
    (spool / "state" / "idle" / "w1").unlink()
    (spool / "state" / "idle").rmdir()  # as an older hub left state/
    push(spool, 1)
    hub.drain()
    assert HubState(spool).worker("w1")["state"] == "busy", "the idle worker was found and handed the push"
    assert_rebuilt_equals_live(spool)


def test_a_link_put_where_the_index_goes_is_removed_never_followed(spool, tmp_path):
    hub = one_idle_worker(spool)
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "keep").write_text("mine\n")
    index = spool / "state" / "idle"
    (index / "w1").unlink()
    index.rmdir()
    index.symlink_to(victim)
    push(spool, 1)
    hub.drain()
    assert sorted(os.listdir(victim)) == ["keep"] and (victim / "keep").read_text() == "mine\n"
    assert not index.is_symlink() and HubState(spool).worker("w1")["state"] == "busy"
