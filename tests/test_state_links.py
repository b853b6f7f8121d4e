"""Links and special files put into state/ or a worker's directory: never followed, never waited on.

Anyone who can write the spool can put a symlink where a state file or a
heartbeat is, or a FIFO that blocks its reader for ever. The hub's scripts,
`trivialci status` and `trivialci up` must neither write through the one nor
hang on the other.
"""

import json
import os
import signal
import threading
import time

import pytest
from conftest import run_cli, wait_for
from test_flow import Origin

from trivialci.errors import TrivialCiError
from trivialci.hub import scheduling
from trivialci.hub.state import HubState, heartbeat_age
from trivialci.spool.heartbeat import read_heartbeat
from trivialci.spool.layout import hub_dir, worker_dir

JOB = "20261125T000000Z-abcdef"


def queued(job=JOB, kind="build"):
    return {"job": job, "status": "QUEUED", "repo": "/r", "branch": "main", "sha": "a" * 40, "kind": kind,
            "attempt": 1, "queued": "2026-11-25T00:00:00.000Z"}


@pytest.fixture
def state(spool) -> HubState:
    hub_dir(spool).create()
    return HubState(spool)


def without_waiting(call, timeout=10.0):
    """call(), failing the test if it blocks (on a FIFO) instead of returning; a blocked call is left behind."""
    result = []
    thread = threading.Thread(target=lambda: result.append(call()), daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        pytest.fail(f"{call} waited on a special file")
    return result[0]


def fifo_heartbeat(spool, name="w1"):
    node = worker_dir(spool, name)
    node.create()
    os.mkfifo(node.heartbeat)
    return node


# --- state/ ----------------------------------------------------------------------------------

def test_a_link_in_state_boots_is_replaced_never_written_through(state, tmp_path, monkeypatch):
    monkeypatch.setenv("TRIVIALCI_SPOOL", str(state.node_dir.spool))
    victim = tmp_path / "authorized_keys"
    victim.write_text("ssh-ed25519 AAAA precious\n")
    os.utime(victim, (1, 1))  # old: the hub takes it for a boot asked long ago, and asks again
    state.apply_status(queued())
    (state.root / "boots").mkdir()
    (state.root / "boots" / "build.json").symlink_to(victim)

    assert scheduling.boot_workers(state) == ["build"]

    assert victim.read_text() == "ssh-ed25519 AAAA precious\n"
    marker = state.root / "boots" / "build.json"
    assert not marker.is_symlink() and json.loads(marker.read_text())["kind"] == "build"
    assert scheduling.boot_workers(state) == [], "the fresh marker holds the next boot back"


def test_a_link_in_state_jobs_is_not_read(state, tmp_path):
    secret = tmp_path / "secret.json"
    secret.write_text(json.dumps({**queued(), "status": "PASSED", "token": "s3cr3t"}))
    (state.root / "jobs").mkdir()
    (state.root / "jobs" / f"{JOB}.json").symlink_to(secret)
    assert state.job(JOB) is None
    assert state.recent_jobs(10) == []


def test_a_fifo_in_state_is_not_waited_on(state):
    (state.root / "jobs").mkdir()
    os.mkfifo(state.root / "jobs" / f"{JOB}.json")
    (state.root / "workers").mkdir()
    os.mkfifo(state.root / "workers" / "w1.json")
    assert without_waiting(lambda: state.job(JOB)) is None
    assert without_waiting(lambda: state.recent_jobs(10)) == []
    assert without_waiting(lambda: state.worker("w1")) is None and without_waiting(state.workers) == []


def test_a_state_directory_replaced_by_a_link_is_neither_read_nor_written_through(state, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    (elsewhere / "build").mkdir(parents=True)
    (elsewhere / f"{JOB}.json").write_text(json.dumps(queued()))
    (elsewhere / "build" / f"20261125000000000.{JOB}.json").write_text(json.dumps(queued()))
    before = sorted(str(p) for p in elsewhere.rglob("*"))
    for part in ("jobs", "queue", "workers", "branches"):
        (state.root / part).symlink_to(elsewhere, target_is_directory=True)

    assert state.job(JOB) is None and state.recent_jobs(10) == []
    assert state.queued_kinds() == [] and state.queued("build") == [] and state.workers() == []
    with pytest.raises(TrivialCiError, match="state/queue .*link"):
        state.apply_status(queued("20261125T000001Z-000001"))
    with pytest.raises(TrivialCiError, match="state/workers .*link"):
        state.set_worker("w1", "build", "idle", None)
    assert sorted(str(p) for p in elsewhere.rglob("*")) == before, "nothing was written through the links"


def test_state_itself_replaced_by_a_link_is_not_read(spool, tmp_path):
    hub_dir(spool).create()
    elsewhere = tmp_path / "elsewhere"
    (elsewhere / "jobs").mkdir(parents=True)
    (elsewhere / "jobs" / f"{JOB}.json").write_text(json.dumps(queued()))
    os.rmdir(spool / "state")
    (spool / "state").symlink_to(elsewhere, target_is_directory=True)
    assert HubState(spool).job(JOB) is None


def test_a_rebuild_replaces_linked_state_directories_with_real_ones(state, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "keep.txt").write_text("not the hub's")
    for part in ("jobs", "queue"):
        (state.root / part).symlink_to(elsewhere, target_is_directory=True)
    state.rebuild()
    state.apply_status(queued())
    assert not (state.root / "jobs").is_symlink() and state.job(JOB)["status"] == "QUEUED"
    assert os.listdir(elsewhere) == ["keep.txt"]


def test_a_link_or_fifo_named_pause_or_built_is_not_taken_for_one(state, tmp_path):
    (tmp_path / "anything").write_text("x")
    (state.root / "PAUSE").symlink_to(tmp_path / "anything")
    (state.root / ".built").symlink_to(tmp_path / "anything")
    assert not state.paused()
    assert not HubState.open(state.node_dir.spool).root.joinpath(".built").is_symlink(), "rebuilt: no .built of its own"
    (state.root / "PAUSE").unlink()
    os.mkfifo(state.root / "PAUSE")
    assert not without_waiting(state.paused)
    (state.root / "PAUSE").unlink()
    (state.root / "PAUSE").touch()
    assert state.paused(), "a person's `touch state/PAUSE` still pauses"


# --- heartbeats ------------------------------------------------------------------------------

def test_a_heartbeat_that_is_a_link_or_fifo_is_no_heartbeat(spool, tmp_path):
    fifo_heartbeat(spool, "w1")
    assert without_waiting(lambda: read_heartbeat(worker_dir(spool, "w1"))) is None
    assert without_waiting(lambda: read_heartbeat(worker_dir(spool, "w1").heartbeat)) is None
    assert heartbeat_age(spool, "w1") is None, "a FIFO is no sign of life"

    beat = tmp_path / "beat.json"
    beat.write_text(json.dumps({"pid": 1, "host": "elsewhere"}))
    node = worker_dir(spool, "w2")
    node.create()
    node.heartbeat.symlink_to(beat)
    assert read_heartbeat(node) is None and read_heartbeat(node.heartbeat) is None
    assert heartbeat_age(spool, "w2") is None


def test_a_worker_directory_replaced_by_a_link_has_no_heartbeat(spool, tmp_path):
    hub_dir(spool).create()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "worker.json").write_text(json.dumps({"pid": 1, "host": "h"}))
    (spool / "workers" / "w1").symlink_to(elsewhere, target_is_directory=True)
    assert read_heartbeat(worker_dir(spool, "w1")) is None
    assert heartbeat_age(spool, "w1") is None


def test_a_regular_heartbeat_is_read_with_its_age(spool):
    node = worker_dir(spool, "w1")
    node.create()
    node.heartbeat.write_text(json.dumps({"pid": 7, "host": "h"}))
    os.utime(node.heartbeat, (time.time() - 60, time.time() - 60))
    beat = read_heartbeat(node)
    assert beat["pid"] == 7 and 59 <= beat["age"] <= 65
    assert 59 <= heartbeat_age(spool, "w1") <= 65


def test_a_fifo_heartbeat_does_not_hang_the_hubs_script_or_queue(spool, start_node):
    start_node("hub", "--spool", spool)
    wait_for(lambda: (spool / "hub.json").exists(), message="the hub to start")
    fifo_heartbeat(spool, "w1")
    assert run_cli("emit", "work_status", json.dumps(queued()), "--spool", spool).returncode == 0
    assert run_cli("emit", "work_required", json.dumps({"worker": "w1", "kind": "build"}),
                   "--spool", spool).returncode == 0
    assert run_cli("emit", "hello", "{}", "--spool", spool).returncode == 0

    handled = wait_for(lambda: _handled_types(spool) >= {"work_status", "work_required", "hello"}, timeout=30,
                       message="the hub to get past the FIFO and handle the next event")
    assert handled
    assert list((spool / "workers" / "w1" / "inbox").iterdir()) == [], "a worker without a heartbeat gets no job"


def _handled_types(spool) -> set[str]:
    return {p.name.split("-", 1)[1].split(".")[0] for p in (spool / "done").glob("*/*.json")
            if not p.name.endswith(".result.json")}


def test_status_with_a_fifo_heartbeat_answers(spool):
    hub_dir(spool).create()
    fifo_heartbeat(spool, "w1")
    shown = run_cli("status", "--spool", spool, timeout=30)
    assert shown.returncode == 0, shown.stderr
    rows = {line.split()[0]: line for line in shown.stdout.splitlines()[2:] if line.strip()}
    assert "not running" in rows["w1"]


def test_up_stops_on_ctrl_c_with_a_fifo_heartbeat_in_its_spool(tmp_path, start_node):
    origin = Origin(tmp_path)
    spool = tmp_path / "spool"
    up = start_node("up", "--repo", origin.bare, "--spool", spool, "--store", f"file://{tmp_path / 'store'}",
                    "--workdir", tmp_path / "ciwork", "--ui", "off")
    wait_for(lambda: (spool / "hub.json").exists(), timeout=30, message="up's hub to start")
    fifo_heartbeat(spool, "w9")
    up.proc.send_signal(signal.SIGINT)
    assert up.proc.wait(30) == 0, up.stderr()
