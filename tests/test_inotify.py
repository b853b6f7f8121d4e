"""inotify is only a hint: overflows, a dead watcher and slow writers lose nothing; polling works alone."""

import json
import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest
from conftest import events_in, leftovers, outcomes, records, wait_for, write_script

from trivialci import emit
from trivialci.spool import mounts
from trivialci.spool.layout import hub_dir
from trivialci.spool.node import Node, NodeConfig

MAX_QUEUED = Path("/proc/sys/fs/inotify/max_queued_events")


def tick_script(pipeline, ran=None):
    """An executable `tick` that appends its event id to `ran`, or does nothing."""
    body = f'echo "$TRIVIALCI_EVENT_ID" >> "{ran}"\n' if ran else "exit 0\n"
    return write_script(pipeline, "tick", "#!/bin/sh\n" + body, executable=True)


def done_count(spool) -> int:
    return len(list((spool / "done").glob("*/*.result.json")))


def assert_each_ran_once(ran, spool, count):
    ids = ran.read_text().splitlines()
    assert len(ids) == count and len(set(ids)) == count, "every event ran, and only once"
    assert len(records(spool, "done")) == count and records(spool, "failed") == []
    assert leftovers(spool) == []


# --- (a) a queue overflow -------------------------------------------------------


def start_hub_with_a_tiny_inotify_queue(start_node, *args):
    """Start a hub whose inotify instance holds 16 events; the system's limit is restored at once."""
    original = MAX_QUEUED.read_text()
    try:
        MAX_QUEUED.write_text("16\n")
        hub = start_node("hub", *args)
        wait_for(lambda: "handling" in hub.stderr() or hub.proc.poll() is not None, message="the hub to start")
    finally:
        MAX_QUEUED.write_text(original)
    return hub


def test_an_inotify_queue_overflow_loses_nothing(spool, pipeline, tmp_path, start_node):
    if os.geteuid() != 0:
        pytest.skip("lowering fs.inotify.max_queued_events needs root")
    ran = tmp_path / "ran.txt"
    tick_script(pipeline, ran)
    hub = start_hub_with_a_tiny_inotify_queue(start_node, "--spool", spool, "--pipeline", pipeline, "--grace", "0.5")
    assert json.loads((spool / "hub.json").read_text())["polling"] is None, "the hub trusts inotify here"

    hub.proc.send_signal(signal.SIGSTOP)  # nobody reads the queue: 500 drops overflow it for sure
    try:
        for n in range(500):
            emit("tick", {"n": n}, spool=spool)
    finally:
        hub.proc.send_signal(signal.SIGCONT)
    wait_for(lambda: done_count(spool) >= 500, timeout=30, message="all 500 events, found by the rescan")
    assert hub.stop(signal.SIGTERM, timeout=10) == 0, hub.stderr()
    assert_each_ran_once(ran, spool, 500)


# --- (b) a dead watcher, in process -----------------------------------------------


def stop_observer(watcher):
    watcher._observer.stop()
    watcher._observer.join(5)


def crash_observer(watcher):
    """End the observer's thread the way a raising handler does: its emitter thread runs on."""
    def dispatch_and_raise(event_queue):
        raise RuntimeError("a handler raised")

    watcher._observer.dispatch_events = dispatch_and_raise  # used once the current wait for an event returns
    emit("tick", {"wake": "the observer"}, spool=Path(watcher.directory).parent)


@pytest.mark.parametrize("kill_watcher", [stop_observer, crash_observer], ids=["stopped", "crashed"])
def test_a_dead_watcher_is_restarted_and_the_rescan_covers_the_gap(kill_watcher, spool, pipeline, caplog,
                                                                   monkeypatch):
    thread_errors = []
    monkeypatch.setattr(threading, "excepthook", thread_errors.append)  # the crash is this test's doing
    tick_script(pipeline)
    node = Node(hub_dir(spool), NodeConfig(pipeline=pipeline, rescan=0.3, settle=0.2, grace=0.5)).open()
    try:
        node.run_once(timeout=0)  # the start-up rescan is behind us: only the timer's rescan is left
        dead, observer = node.notices._watcher, node.notices._watcher._observer
        emitters = list(observer.emitters)
        kill_watcher(dead)
        wait_for(lambda: not observer.is_alive(), message="the observer thread to end")
        expected = {emit("tick", {"n": n}, spool=spool).name for n in range(5)} | set(os.listdir(spool / "inbox"))

        def all_handled():
            node.run_once(timeout=0.1)
            return set(outcomes(spool)) >= expected

        wait_for(all_handled, timeout=10, message="the events dropped while the watcher was dead")
        assert node.notices._watcher is not dead and node.notices._watcher.alive(), "a new watcher runs"
        assert "the inbox watcher died; restarting it" in caplog.text
        assert not any(emitter.is_alive() for emitter in emitters), "the dead watcher's threads were stopped"
    finally:
        node.close()
    assert all(places == ["done"] for places in outcomes(spool).values())
    expected_errors = ["a handler raised"] if kill_watcher is crash_observer else []
    assert [str(error.exc_value) for error in thread_errors] == expected_errors


# --- (c) a slow, non-atomic writer -------------------------------------------------

CHUNKS = [b'{"name": "slow", ', b'"items": [1, 2, 3], ', b'"note": "written by hand, in pieces"', b"}\n"]


def write_slowly(path, pause=0.2):
    """What `cat > inbox/slow.json` does while a person types: several writes, then close."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        for chunk in CHUNKS:
            os.write(fd, chunk)
            time.sleep(pause)  # the writer's own pace, not synchronisation: the assertion waits below
    finally:
        os.close(fd)


@pytest.mark.parametrize("mode", [[], ["--poll", "0.1"]], ids=["inotify", "polling"])
def test_a_slow_writer_is_read_once_it_is_complete(mode, spool, pipeline, tmp_path, start_node):
    received = tmp_path / "received"
    write_script(pipeline, "slow", f'#!/bin/sh\ncat >> "{received}"\n', executable=True)
    hub = start_node("hub", "--spool", spool, "--pipeline", pipeline, "--settle", "2", "--grace", "0.5", *mode)
    wait_for(lambda: "handling" in hub.stderr(), message="the hub to start")

    write_slowly(spool / "inbox" / "slow.json")
    wait_for(lambda: outcomes(spool), message="the slow event to be handled")
    assert hub.stop(signal.SIGTERM, timeout=10) == 0, hub.stderr()

    assert outcomes(spool) == {"slow.json": ["done"]}
    [event] = events_in(spool, "done")
    assert event.read_bytes() == b"".join(CHUNKS), "the whole payload, as written"
    assert received.read_bytes() == b"".join(CHUNKS), "the script read it once, complete"
    assert leftovers(spool) == []


def test_with_inotify_a_writer_that_pauses_longer_than_settle_is_still_waited_for(spool, pipeline, tmp_path,
                                                                                 start_node):
    """inotify saw the file being made: the node waits for its close-write, not for --settle."""
    received = tmp_path / "received"
    write_script(pipeline, "slow", f'#!/bin/sh\ncat >> "{received}"\n', executable=True)
    hub = start_node("hub", "--spool", spool, "--pipeline", pipeline, "--settle", "0.05", "--grace", "0.5")
    wait_for(lambda: "handling" in hub.stderr(), message="the hub to start")

    write_slowly(spool / "inbox" / "slow.json", pause=0.4)
    wait_for(lambda: outcomes(spool), message="the slow event to be handled")
    assert hub.stop(signal.SIGTERM, timeout=10) == 0, hub.stderr()
    assert outcomes(spool) == {"slow.json": ["done"]}
    assert received.read_bytes() == b"".join(CHUNKS)


# --- (d) polling alone ------------------------------------------------------------


def test_polling_alone_handles_what_programs_drop(spool, pipeline, tmp_path, start_node):
    ran = tmp_path / "ran.txt"
    tick_script(pipeline, ran)
    hub = start_node("hub", "--spool", spool, "--pipeline", pipeline, "--poll", "0.2", "--grace", "0.5")
    wait_for(lambda: "handling" in hub.stderr(), message="the hub to start")
    assert "polling every 0.2 s (--poll)" in hub.stderr()
    assert json.loads((spool / "hub.json").read_text())["polling"] == "polling every 0.2 s (--poll)"

    for n in range(10):
        emit("tick", {"n": n}, spool=spool)
    wait_for(lambda: done_count(spool) >= 10, message="the polled events")
    assert hub.stop(signal.SIGTERM, timeout=10) == 0, hub.stderr()
    assert_each_ran_once(ran, spool, 10)


# --- (e) which filesystems inotify can be trusted on ------------------------------


def test_the_test_directory_is_on_a_local_filesystem(tmp_path):
    fs_type = mounts.filesystem_type(tmp_path)
    assert fs_type != "unknown" and not mounts.sees_other_machines(fs_type), fs_type


@pytest.mark.parametrize("fs_type, remote", [("fuse.sshfs", True), ("nfs4", True), ("cifs", True),
                                             ("ext4", False), ("tmpfs", False), ("overlay", False)])
def test_network_and_fuse_filesystems_are_polled(fs_type, remote):
    assert mounts.sees_other_machines(fs_type) is remote


def test_a_mountinfo_line_with_an_escaped_space_parses():
    line = "36 35 98:0 /data /mnt/ci\\040spool rw,noatime master:1 - fuse.sshfs ci@build:/srv rw,user_id=0\n"
    assert mounts._parse_line(line) == ("/mnt/ci spool", "fuse.sshfs")


def test_a_real_mount_point_with_a_space_is_found(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mount_point = tmp_path / "with space"
    mount_point.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount_point)]).returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    try:
        (mount_point / "inbox").mkdir()
        assert mounts.filesystem_type(mount_point / "inbox") == "tmpfs"
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=True)
