"""A worker's outbox: its scripts' events for the hub wait on its own disk and reach the hub's inbox once, in order."""

import json
import os

import pytest
from conftest import records, wait_for, write_script
from test_flow import BUILD_OK, origin, push_event, store_jobs  # noqa: F401 (origin is a fixture)

from trivialci import emit
from trivialci.spool import outbox
from trivialci.spool.inbox import InboxTracker
from trivialci.spool.layout import hub_dir, worker_dir
from trivialci.up import local_worker_pids


@pytest.fixture
def boxes(tmp_path):
    """An outbox on 'local disk', a worker directory and the hub's inbox on 'the spool'."""
    spool = tmp_path / "spool"
    hub_dir(spool).create()
    worker = worker_dir(spool, "w1")
    worker.create()
    forwarder = outbox.Forwarder(tmp_path / "disk" / "outbox", worker)
    forwarder.create()
    return forwarder


def inbox_payloads(forwarder) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(forwarder.inbox.iterdir(), key=lambda p: p.name.split(".", 1)[1])]


def test_events_reach_the_hubs_inbox_in_the_order_they_were_sent(boxes):
    for number in range(5):
        outbox.put(boxes.outbox, "work_status" if number % 2 else "work_done", {"n": number})
    assert len(outbox.waiting(boxes.outbox)) == 5 and not list(boxes.inbox.iterdir())

    assert boxes.flush() == 5
    assert [p["n"] for p in inbox_payloads(boxes)] == [0, 1, 2, 3, 4]
    assert outbox.waiting(boxes.outbox) == [] and list(boxes.sending.iterdir()) == []


def test_a_crash_after_staging_delivers_the_event_once(boxes):
    outbox.put(boxes.outbox, "work_done", {"n": 1})
    [entry] = outbox.waiting(boxes.outbox)
    boxes._stage(entry)  # the copy is on the spool, the entry staged; then the worker died

    assert boxes.flush() == 1
    assert inbox_payloads(boxes) == [{"n": 1}] and outbox.waiting(boxes.outbox) == []


def test_a_crash_after_the_rename_does_not_deliver_the_event_again(boxes):
    outbox.put(boxes.outbox, "work_done", {"n": 1})
    [entry] = outbox.waiting(boxes.outbox)
    boxes._stage(entry)
    name = entry.split(".", 1)[1]
    os.rename(boxes.sending / name, boxes.inbox / name)  # renamed, but the reply was lost (or the worker died)
    outbox.put(boxes.outbox, "work_required", {"n": 2})

    assert boxes.flush() == 2
    assert inbox_payloads(boxes) == [{"n": 1}, {"n": 2}]


def test_a_half_written_copy_is_written_again(boxes):
    outbox.put(boxes.outbox, "work_done", {"n": 1})
    [entry] = outbox.waiting(boxes.outbox)
    boxes.sending.mkdir()
    (boxes.sending / entry.split(".", 1)[1]).write_text('{"n": ')  # the worker died mid-copy

    boxes.flush()
    assert inbox_payloads(boxes) == [{"n": 1}]


def test_a_spool_out_of_reach_keeps_everything_waiting(boxes, tmp_path):
    outbox.put(boxes.outbox, "work_status", {"n": 1})
    outbox.put(boxes.outbox, "work_done", {"n": 2})
    os.rename(boxes.inbox, tmp_path / "away")  # like a mount that is gone

    with pytest.raises(OSError):
        boxes.flush()
    assert len(outbox.waiting(boxes.outbox)) == 2

    os.rename(tmp_path / "away", boxes.inbox)
    assert boxes.flush() == 2
    assert inbox_payloads(boxes) == [{"n": 1}, {"n": 2}]


def test_the_hub_takes_events_of_one_filesystem_tick_in_the_order_they_were_made(boxes):
    for number, event_type in enumerate(["work_status", "work_done", "work_required"]):
        outbox.put(boxes.outbox, event_type, {"n": number})
    boxes.flush()
    for path in boxes.inbox.iterdir():
        os.utime(path, ns=(10**18, 10**18))  # delivered within one tick of the filesystem's clock
    tracker = InboxTracker(boxes.inbox, settle=1.0)
    tracker.rescan()

    taken = [tracker.pop_ready() for _ in range(3)]
    assert [name.split(".")[0] for name in taken] == ["work_status", "work_done", "work_required"]


def test_a_workers_script_sends_to_its_hub_through_the_outbox_and_to_others_directly(boxes, monkeypatch):
    spool = boxes.inbox.parent
    monkeypatch.setenv("TRIVIALCI_SPOOL", str(spool))
    monkeypatch.setenv(outbox.OUTBOX_ENV, str(boxes.outbox))

    kept = emit("work_status", {"n": 1})
    assert kept.parent == boxes.outbox and not list(boxes.inbox.iterdir())
    direct = emit("hello", {"n": 2}, to="worker:w1")
    assert direct.parent == worker_dir(spool, "w1").inbox


def test_a_push_passes_with_workers_that_keep_an_outbox(tmp_path, start_node, origin):  # noqa: F811
    spool, store = tmp_path / "spool", tmp_path / "store"
    hub = start_node("hub", "--spool", spool, "--store", f"file://{store}", "--workdir", tmp_path / "ciwork" / "hub",
                     "--tick", "0.3", "--grace", "1", env={"TRIVIALCI_WORKER_OUTBOX": "always"})
    try:
        sha = origin.commit("main", {"build": BUILD_OK})
        assert push_event(spool, origin, "main", sha).returncode == 0
        [job] = wait_for(lambda: store_jobs(store), timeout=60, message="the job in the store").values()
        assert job["status"] == "PASSED" and job["sha"] == sha

        worker_root = spool / "workers" / job["worker"]
        [start_work_log] = wait_for(lambda: list(worker_root.glob("done/*/*-start_work.*.log")), timeout=30,
                                    message="start_work recorded with its log")
        assert f"{job['job']}: PASSED" in start_work_log.read_text()
        disk = tmp_path / "ciwork" / job["worker"]
        assert (disk / "outbox" / "staged").is_dir(), "the worker kept an outbox"
        wait_for(lambda: outbox.waiting(disk / "outbox") == [], timeout=30,  # delivered by a thread, a moment later
                 message="the worker's last work_required to leave its outbox")
        assert list((disk / "event-logs").iterdir()) == []
    finally:
        hub.stop()
        for pid in local_worker_pids(spool):
            os.kill(pid, 15)
        wait_for(lambda: not local_worker_pids(spool), timeout=30, message="the booted workers to stop")


@pytest.mark.parametrize("point", ["outbox-staged", "outbox-delivered"])
def test_a_worker_killed_while_delivering_delivers_each_event_once_after_its_restart(tmp_path, start_node, point):
    spool, pipeline, disk = tmp_path / "spool", tmp_path / "pipeline", tmp_path / "disk"
    hub_dir(spool).create()  # the hub's inbox, with no hub: what arrives stays there to be counted
    write_script(pipeline, "ping.py", "import os, trivialci\n"
                 "trivialci.emit('pong', {'from': os.environ['TRIVIALCI_EVENT_ID'], "
                 "'attempt': os.environ['TRIVIALCI_ATTEMPT']})\n")
    worker_dir(spool, "w1").create()
    (worker_dir(spool, "w1").inbox / "ping.json").write_text("{}")
    args = ("worker", "--spool", spool, "--name", "w1", "--pipeline", pipeline, "--workdir", disk, "--outbox",
            "always", "--log-listen", "off")

    crashing = start_node(*args, env={"TRIVIALCI_TEST_CRASH_AT": point})
    assert crashing.proc.wait(30) == -9, crashing.stderr()  # killed itself while delivering the pong
    start_node(*args)
    wait_for(lambda: not outbox.waiting(disk / "outbox") and records(worker_dir(spool, "w1").root), timeout=30,
             message="the restarted worker to deliver its outbox and record ping")

    pongs = [json.loads(p.read_text()) for p in hub_dir(spool).inbox.glob("pong.*.json")]
    sent = [(pong["from"], pong["attempt"]) for pong in pongs]
    assert len(sent) == len(set(sent)), f"a pong was delivered twice: {sent}"
    assert ("ping", "1") in {(sender.split("-", 3)[-1], attempt) for sender, attempt in sent}
    assert list((worker_dir(spool, "w1").root / "sending").iterdir()) == []
