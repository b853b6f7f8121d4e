"""Crashes: a node killed anywhere loses nothing, and a restart runs an event again only when it must."""

import os
import shutil
import signal
import tempfile
from pathlib import Path

import pytest
from conftest import events_in, leftovers, outcomes, pid_alive, records, run_cli, wait_for, write_script

pytestmark = pytest.mark.usefixtures("both_launchers")  # scripts forked, then spawned

# Where the node kills itself -> (attempts the script sees across both runs, attempt in the record).
CRASHES = {
    "claimed": ([2], 2),  # never started before the crash: only the second attempt runs
    "started": ([1, 2], 2),  # interrupted: runs again as attempt 2
    "exited": ([1, 2], 2),  # exited but undecided: runs again as attempt 2
    "decided": ([1], 1),  # the result was written: the restart only finishes the move
    "moved": ([1], 1),  # the event already moved: the restart moves its log and result
}


def appending_script(pipeline, runs, extra=""):
    """An executable `ping` script that appends "ID ATTEMPT" to `runs` (outside the spool)."""
    text = f'#!/bin/sh\necho "$TRIVIALCI_EVENT_ID $TRIVIALCI_ATTEMPT" >> "{runs}"\n{extra}'
    return write_script(pipeline, "ping", text, executable=True)


def drop_ping(spool):
    (spool / "inbox").mkdir(parents=True)
    (spool / "inbox" / "ping.json").write_text('{"n": 1}')


def runs_of(runs_file):
    """The (id, attempt) lines the script appended, in order."""
    if not runs_file.exists():
        return []
    return [(line.split()[0], int(line.split()[1])) for line in runs_file.read_text().splitlines()]


def assert_ended_once(spool, status):
    """The one event ended in exactly one place, with its files; nothing is left behind."""
    assert leftovers(spool) == []
    assert outcomes(spool) == {"ping.json": [status]}
    assert len(events_in(spool, "done")) + len(events_in(spool, "failed")) == 1
    [event] = events_in(spool, status)
    stem = event.name[: -len(".json")]
    assert event.with_name(stem + ".result.json").exists() and event.with_name(stem + ".log").exists()


@pytest.mark.parametrize("point", list(CRASHES))
def test_a_crash_at_each_step_ends_the_event_exactly_once(point, spool, pipeline, tmp_path, start_node):
    runs = tmp_path / "runs.txt"
    appending_script(pipeline, runs)
    drop_ping(spool)

    crashing = start_node("hub", "--spool", spool, "--pipeline", pipeline, env={"TRIVIALCI_TEST_CRASH_AT": point})
    assert crashing.proc.wait(15) == -signal.SIGKILL, crashing.stderr()
    expected_attempts, recorded_attempt = CRASHES[point]
    if expected_attempts[0] == 1:  # the orphaned first attempt still writes its line
        wait_for(lambda: runs_of(runs), message="the first attempt's line")

    restarted = run_cli("hub", "--spool", spool, "--pipeline", pipeline, "--drain", "--grace", "0.5")
    assert restarted.returncode == 0, restarted.stderr

    assert [attempt for _, attempt in runs_of(runs)] == expected_attempts
    assert len({event_id for event_id, _ in runs_of(runs)}) == 1, "every attempt is the same event"
    [result] = records(spool, "done")
    assert result["attempt"] == recorded_attempt and result["status"] == "done" and result["exit_code"] == 0
    assert result["id"] == runs_of(runs)[0][0]
    assert_ended_once(spool, "done")


def test_kill_9_of_the_node_stops_its_orphan_and_runs_the_event_again(spool, pipeline, tmp_path, start_node):
    runs, pid_file = tmp_path / "runs.txt", tmp_path / "script.pid"
    sleep_on_first = (f'[ "$TRIVIALCI_ATTEMPT" = 1 ] || exit 0\n'
                      f'echo $$ > "{pid_file}.tmp" && mv "{pid_file}.tmp" "{pid_file}"\nexec sleep 60\n')
    appending_script(pipeline, runs, sleep_on_first)
    drop_ping(spool)

    node = start_node("hub", "--spool", spool, "--pipeline", pipeline, "--grace", "0.5")
    orphan = int(wait_for(lambda: pid_file.exists() and pid_file.read_text().strip(), message="the script's pid"))
    try:
        node.proc.send_signal(signal.SIGKILL)
        assert node.proc.wait(10) == -signal.SIGKILL
        assert pid_alive(orphan), "a SIGKILLed node leaves its script running"

        restarted = run_cli("hub", "--spool", spool, "--pipeline", pipeline, "--drain", "--grace", "0.5")
        assert restarted.returncode == 0, restarted.stderr
        assert not pid_alive(orphan), "the restarted node stops what the killed one left running"
    finally:
        if pid_alive(orphan):
            os.kill(orphan, signal.SIGKILL)

    assert [attempt for _, attempt in runs_of(runs)] == [1, 2]
    [result] = records(spool, "done")
    assert result["attempt"] == 2 and result["status"] == "done"
    assert_ended_once(spool, "done")


def test_an_event_that_kills_its_node_every_time_is_given_up(spool, pipeline, tmp_path):
    runs = tmp_path / "runs.txt"
    appending_script(pipeline, runs, "kill -9 $PPID\n")
    drop_ping(spool)
    node = ("hub", "--spool", spool, "--pipeline", pipeline, "--drain", "--grace", "0.5", "--max-attempts", "2")

    for attempt in (1, 2):
        killed = run_cli(*node)
        assert killed.returncode == -signal.SIGKILL, killed.stderr
        assert [a for _, a in runs_of(runs)] == list(range(1, attempt + 1))
    finished = run_cli(*node)
    assert finished.returncode == 0, finished.stderr

    assert [a for _, a in runs_of(runs)] == [1, 2], "a third attempt is never made"
    [result] = records(spool, "failed")
    assert result["status"] == "failed" and result["reason"].startswith("gave up after 2 attempts")
    assert result["attempt"] == 2
    assert_ended_once(spool, "failed")


@pytest.fixture
def other_disk():
    """A directory on another filesystem than tmp_path (tmpfs), as a worker's own disk is; removed after."""
    if not os.path.isdir("/dev/shm") or os.stat("/dev/shm").st_dev == os.stat(tempfile.gettempdir()).st_dev:
        pytest.skip("no second filesystem (/dev/shm) to put the worker's own disk on")
    directory = Path(tempfile.mkdtemp(prefix="trivialci-disk-", dir="/dev/shm"))
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


@pytest.mark.parametrize("point", list(CRASHES))
def test_a_worker_with_its_logs_on_its_own_disk_ends_the_event_exactly_once(point, spool, pipeline, tmp_path,
                                                                            start_node, other_disk):
    runs = tmp_path / "runs.txt"
    appending_script(pipeline, runs, 'echo "the script speaks"\n')
    worker = ("worker", "--spool", spool, "--name", "w1", "--pipeline", pipeline, "--outbox", "always",
              "--workdir", other_disk, "--log-listen", "off", "--grace", "0.5")
    drop_ping(spool / "workers" / "w1")

    crashing = start_node(*worker, env={"TRIVIALCI_TEST_CRASH_AT": point})
    assert crashing.proc.wait(15) == -signal.SIGKILL, crashing.stderr()
    if CRASHES[point][0][0] == 1:
        wait_for(lambda: runs_of(runs), message="the first attempt's line")
    restarted = run_cli(*worker, "--drain")
    assert restarted.returncode == 0, restarted.stderr

    assert [attempt for _, attempt in runs_of(runs)] == CRASHES[point][0]
    assert_ended_once(spool / "workers" / "w1", "done")
    [log] = (spool / "workers" / "w1" / "done").glob("*/*.log")
    assert "the script speaks" in log.read_text(), "the log came over from the worker's own disk"
    assert list((other_disk / "event-logs").iterdir()) == []
