"""state/ is written without fsync, and rebuilt from the event log when the machine crashed since (hub/unsynced.py)."""

import json
import os

import pytest
from conftest import write_script

import trivialci
from trivialci.hub import unsynced
from trivialci.hub.state import HubState
from trivialci.hub.verify import compare
from trivialci.spool.layout import hub_dir
from trivialci.spool.node import Node, NodeConfig

J1, J2 = "20261125T000000Z-0000a1", "20261125T000001Z-0000a2"
ANOTHER_BOOT = "00000000-0000-4000-8000-000000000000"


def queued(job, at):
    return {"job": job, "status": "QUEUED", "repo": "/r", "branch": "main", "sha": "a" * 40, "kind": "build",
            "attempt": 1, "queued": at}


@pytest.fixture(autouse=True)
def fresh_process_view():
    """Each test is a new process as far as unsynced.py knows (its cache is per process)."""
    unsynced._allowed.clear()
    yield
    unsynced._allowed.clear()


def handled_by_a_hub(spool, pipeline) -> HubState:
    """J1 BUILDING and J2 QUEUED, through real scripts of a real node, so that done/ holds the events."""
    write_script(pipeline, "work_status.py", (
        "import json, os, sys\nfrom trivialci.hub.state import HubState\n"
        "HubState.open(os.environ['TRIVIALCI_SPOOL']).apply_status(json.load(sys.stdin))\n"))
    for update in (queued(J1, "2026-11-25T00:00:00.000Z"), queued(J2, "2026-11-25T00:00:01.000Z"),
                   {"job": J1, "status": "BUILDING", "attempt": 1, "worker": "w"}):
        trivialci.emit("work_status", update, spool=spool)
    with Node(hub_dir(spool), NodeConfig(pipeline=pipeline)) as node:
        assert node.drain(timeout=30)
    return HubState(spool)


def test_after_a_crash_of_the_machine_the_state_is_rebuilt_from_the_event_log(spool, pipeline):
    state = handled_by_a_hub(spool, pipeline)
    assert json.loads((state.root / ".boot").read_text())["boot"] == unsynced.boot_id()
    # What a power cut may leave of files written without fsync: one empty, one gone.
    (state.root / ".boot").write_text(json.dumps({"boot": ANOTHER_BOOT}))
    (state.root / "jobs" / f"{J1}.json").write_bytes(b"")
    (state.root / "queue" / "build").joinpath(os.listdir(state.root / "queue" / "build")[0]).unlink()

    reopened = HubState.open(spool)
    assert reopened.job(J1)["status"] == "BUILDING"
    assert reopened.queued("build") == [J2]
    assert compare(spool).differences == []
    assert json.loads((state.root / ".boot").read_text())["boot"] == unsynced.boot_id()


def test_a_state_written_while_this_machine_runs_is_not_rebuilt(spool, pipeline):
    state = handled_by_a_hub(spool, pipeline)
    built = (state.root / ".built").read_text()
    (state.root / "jobs" / f"{J2}.json").write_text("{}")  # a change no rebuild made: it stays
    HubState.open(spool)
    assert (state.root / ".built").read_text() == built
    assert (state.root / "jobs" / f"{J2}.json").read_text() == "{}"


def test_a_state_from_before_the_mark_was_synced_and_is_trusted_then_marked(spool, pipeline):
    state = handled_by_a_hub(spool, pipeline)
    (state.root / ".boot").unlink()
    built = (state.root / ".built").read_text()
    HubState.open(spool)
    assert (state.root / ".built").read_text() == built
    assert json.loads((state.root / ".boot").read_text())["boot"] == unsynced.boot_id()


def synced_paths(monkeypatch) -> list[str]:
    """What os.fsync is called on from now on, as paths."""
    seen, real = [], os.fsync

    def recording(fd):
        seen.append(os.readlink(f"/proc/self/fd/{fd}"))
        return real(fd)

    monkeypatch.setattr(os, "fsync", recording)
    return seen


def test_state_writes_are_not_synced_once_this_boot_is_marked(spool, monkeypatch):
    hub_dir(spool).create()
    HubState.open(spool)
    unsynced._allowed.clear()  # the next script's process
    seen = synced_paths(monkeypatch)
    state = HubState.open(spool)
    state.apply_status(queued(J1, "2026-11-25T00:00:00.000Z"))
    state.apply_status({"job": J1, "status": "BUILDING", "attempt": 1, "worker": "w"})
    assert state.job(J1)["status"] == "BUILDING"
    assert [path for path in seen if "/state" in path or f"{J1}.json." in path] == []  # staged in tmp/, or renamed


def test_on_a_network_filesystem_state_writes_stay_synced(spool, monkeypatch):
    monkeypatch.setattr(unsynced, "filesystem_type", lambda path: "nfs4")
    hub_dir(spool).create()
    seen = synced_paths(monkeypatch)
    state = HubState.open(spool)
    state.apply_status(queued(J1, "2026-11-25T00:00:00.000Z"))
    assert not (state.root / ".boot").exists()
    assert any(f"/.{J1}.json." in path for path in seen)  # its staged file, synced before the rename


def test_a_state_removed_while_a_process_writes_it_is_marked_again(spool, pipeline):
    import shutil

    state = handled_by_a_hub(spool, pipeline)
    HubState.open(spool)
    shutil.rmtree(state.root)  # a person's rm -rf state/ between two opens of one process
    reopened = HubState.open(spool)
    assert reopened.job(J1)["status"] == "BUILDING"
    assert json.loads((state.root / ".boot").read_text())["boot"] == unsynced.boot_id()
