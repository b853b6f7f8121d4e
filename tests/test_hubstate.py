"""The hub's state as a fold of events: queue order, stale updates, requeues, rebuilds."""

from trivialci.hub.state import HubState
from trivialci.spool.layout import hub_dir

J1, J2 = "20261125T000000Z-0000a1", "20261125T000001Z-0000a2"


def queued(job, at, kind="build", attempt=1):
    return {"job": job, "status": "QUEUED", "repo": "/r", "branch": "main", "sha": "a" * 40, "kind": kind,
            "attempt": attempt, "queued": at}


def make_state(spool):
    hub_dir(spool).create()
    return HubState(spool)


def test_the_queue_is_in_the_order_jobs_were_queued_to_the_millisecond(spool):
    state = make_state(spool)
    state.apply_status(queued("20261125T025712Z-ffffff", "2026-11-25T02:57:12.038Z"))
    state.apply_status(queued("20261125T025712Z-000000", "2026-11-25T02:57:12.734Z"))
    state.apply_status(queued("20261125T025711Z-888888", "2026-11-25T02:57:11.999Z"))
    assert state.queued("build") == ["20261125T025711Z-888888", "20261125T025712Z-ffffff", "20261125T025712Z-000000"]


def test_an_update_from_an_older_attempt_or_step_changes_nothing(spool):
    state = make_state(spool)
    state.apply_status(queued(J1, "2026-11-25T00:00:00.000Z"))
    state.apply_status({"job": J1, "status": "BUILDING", "attempt": 1, "worker": "w"})
    state.apply_status({"job": J1, "status": "STARTING", "attempt": 1, "worker": "w"})
    assert state.job(J1)["status"] == "BUILDING"
    state.apply_status({"job": J1, "status": "LOST", "attempt": 1})
    state.apply_status({"job": J1, "status": "QUEUED", "attempt": 2, "worker": None, "started": None})
    state.apply_status({"job": J1, "status": "PASSED", "attempt": 1, "worker": "w"})
    job = state.job(J1)
    assert (job["status"], job["attempt"], job["worker"]) == ("QUEUED", 2, None)
    assert state.queued("build") == [J1]


def test_a_deleted_state_is_rebuilt_from_done_by_the_same_fold(spool, pipeline):
    import json

    from conftest import write_script

    import trivialci
    from trivialci.spool.node import Node, NodeConfig

    write_script(pipeline, "work_status.py", (
        "import json, os, sys\nfrom trivialci.hub.state import HubState\n"
        "HubState.open(os.environ['TRIVIALCI_SPOOL']).apply_status(json.load(sys.stdin))\n"))
    for update in (queued(J1, "2026-11-25T00:00:00.000Z"), queued(J2, "2026-11-25T00:00:01.000Z"),
                   {"job": J1, "status": "BUILDING", "attempt": 1, "worker": "w"},
                   {"job": J1, "status": "PASSED", "attempt": 1, "worker": "w"}):
        trivialci.emit("work_status", update, spool=spool)
    with Node(hub_dir(spool), NodeConfig(pipeline=pipeline)) as node:
        assert node.drain(timeout=30)
    state = HubState(spool)
    before = {name: state.job(name) for name in (J1, J2)}
    import shutil
    shutil.rmtree(state.root)
    rebuilt = HubState.open(spool)
    assert {name: rebuilt.job(name) for name in (J1, J2)} == before
    assert rebuilt.queued("build") == [J2]
    assert json.loads((rebuilt.root / ".built").read_text())["events"] == 4


def beat(spool, worker, pid):
    import json

    from trivialci.spool.layout import worker_dir

    node = worker_dir(spool, worker)
    node.create()
    (node.root / "worker.json").write_text(json.dumps({"pid": pid, "host": "h"}))


def test_a_stale_work_required_does_not_free_a_busy_worker_but_a_restart_loses_its_job(spool):
    from trivialci.hub import scheduling

    state = make_state(spool)
    beat(spool, "w1", 100)
    state.apply_status(queued(J1, "2026-11-25T00:00:00.000Z"))
    state.apply("work_required", {"worker": "w1", "kind": "build"})
    assert scheduling.dispatch(state) == [("w1", J1)]
    assert state.job(J1)["worker_process"] == "100@h"

    older = "20261124T000000Z-0000f0"
    assert not scheduling.worker_ready(state, {"worker": "w1", "kind": "build", "after": older, "attempt": 1})
    assert state.worker("w1")["state"] == "busy" and state.job(J1)["status"] == "STARTING"

    beat(spool, "w1", 200)  # the worker's process changed: it restarted and lost j1
    assert scheduling.worker_ready(state, {"worker": "w1", "kind": "build"})
    job = state.job(J1)
    assert (job["status"], job["attempt"], job["worker"]) == ("QUEUED", 2, None)
    assert state.worker("w1")["state"] == "idle"


def test_the_work_required_that_names_the_attempt_frees_the_worker(spool):
    from trivialci.hub import scheduling

    state = make_state(spool)
    beat(spool, "w1", 100)
    state.apply_status(queued(J1, "2026-11-25T00:00:00.000Z"))
    state.apply("work_required", {"worker": "w1", "kind": "build"})
    scheduling.dispatch(state)
    assert scheduling.worker_ready(state, {"worker": "w1", "kind": "build", "after": J1, "attempt": 1})
    assert state.worker("w1")["state"] == "idle"


def test_event_values_that_are_not_file_names_are_refused_and_write_nothing(spool):
    import pytest

    from trivialci.hub import scheduling
    from trivialci.errors import BadInput

    state = make_state(spool)
    before = sorted(p for p in spool.rglob("*"))
    with pytest.raises(BadInput):
        state.apply_status(queued("../../inbox/evil", "2026-11-25T00:00:00.000Z"))
    with pytest.raises(BadInput):
        state.apply_status(queued(J1, "2026-11-25T00:00:00.000Z", kind="../../inbox"))
    with pytest.raises(BadInput):
        scheduling.worker_ready(state, {"worker": "../../inbox/evil", "kind": "build"})
    assert sorted(p for p in spool.rglob("*")) == before


def test_dispatch_to_named_workers_reads_only_theirs_and_hands_the_oldest_job(spool, monkeypatch):
    from trivialci.hub import scheduling

    state = make_state(spool)
    for number in range(5):
        beat(spool, f"w{number}", 100 + number)
        state.apply("work_required", {"worker": f"w{number}", "kind": "build"})
    read = []
    original = HubState.worker
    monkeypatch.setattr(HubState, "worker", lambda self, name: read.append(name) or original(self, name))
    assert scheduling.dispatch(state, ["w3"]) == [], "nothing queued: nothing read"
    assert read == []
    state.apply_status(queued(J2, "2026-11-25T00:00:02.000Z"))
    state.apply_status(queued(J1, "2026-11-25T00:00:01.000Z"))
    assert scheduling.dispatch(state, ["w3"]) == [("w3", J1)]
    assert set(read) == {"w3"}, "no other worker's file is read"
    assert scheduling.dispatch(state) == [("w0", J2)]  # all of them, as the tick does
