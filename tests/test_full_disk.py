"""A full disk: the node holds what it has, stops claiming, says why, and resumes by itself."""

import errno
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from conftest import leftovers, outcomes, run_cli, wait_for, write_script

from trivialci import emit

EVENTS = 20


@pytest.fixture
def small_disk(tmp_path):
    """A 2 MiB tmpfs under tmp_path, unmounted at the end (lazily if something still holds it)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs to fill needs root")
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount_point)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield mount_point
    finally:
        if subprocess.run(["umount", str(mount_point)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(mount_point)], check=True)


def fill(path):
    """Write `path` until the filesystem has not one block left."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        while True:
            os.write(fd, b"\0" * 65536)  # a short write is followed by ENOSPC on the next one
    except OSError as error:
        if error.errno != errno.ENOSPC:
            raise
    finally:
        os.close(fd)
    assert os.statvfs(path).f_bfree == 0, "the filesystem is full"


def test_a_full_disk_holds_work_stops_claiming_and_resumes(small_disk, pipeline, tmp_path, start_node):
    spool, started, gate = small_disk / "spool", tmp_path / "started", tmp_path / "gate"
    # Each script says it started, then waits for the gate: the first one is running while the disk fills.
    write_script(pipeline, "job", f'#!/bin/sh\necho "$TRIVIALCI_EVENT_ID" >> "{started}"\n'
                 f'while [ ! -e "{gate}" ]; do sleep 0.02; done\n', executable=True)
    names = [emit("job", {"n": n}, spool=spool).name for n in range(EVENTS)]
    hub = start_node("hub", "--spool", spool, "--pipeline", pipeline, "--grace", "0.5", "--settle", "0.2")
    wait_for(started.exists, message="the first script to start")

    fill(small_disk / "filler")
    gate.touch()  # the first script ends; its result cannot be written
    wait_for(lambda: "claiming nothing until" in hub.stderr(), message="the node to say it stopped claiming")
    assert "No space left on device" in hub.stderr()
    assert len(list((spool / "inbox").glob("job.*.json"))) == EVENTS - 1, "the rest wait, unclaimed, in inbox/"
    held = sorted(p.name for p in (spool / "work").iterdir())
    assert len(held) == 2 and held[0].endswith(".json.1@hub") and held[1].endswith(".log"), "held, undecided"

    os.unlink(small_disk / "filler")
    wait_for(lambda: len(list((spool / "done").glob("*/*.result.json"))) == EVENTS, timeout=30,
             message="every event to be recorded once space returned")
    assert "resuming" in hub.stderr()
    assert hub.stop(signal.SIGTERM, timeout=10) == 0, hub.stderr()

    assert outcomes(spool) == {name: ["done"] for name in names}
    assert leftovers(spool) == []


def test_a_node_started_on_a_full_disk_says_so_and_leaves_no_lock_behind(small_disk, pipeline):
    spool = small_disk / "spool"
    write_script(pipeline, "job", "#!/bin/sh\nexit 0\n", executable=True)
    name = emit("job", {"n": 1}, spool=spool).name
    fill(small_disk / "filler")

    refused = run_cli("hub", "--spool", spool, "--pipeline", pipeline, "--drain")
    assert refused.returncode == 4, refused.stderr
    assert "No space left on device" in refused.stderr and "bug" not in refused.stderr
    assert not (spool / "node.lock").exists(), "no empty lock is left to block the next start"

    os.unlink(small_disk / "filler")
    started = run_cli("hub", "--spool", spool, "--pipeline", pipeline, "--drain")
    assert started.returncode == 0, started.stderr
    assert outcomes(spool) == {name: ["done"]}


def cpu_seconds(pid: int) -> float:
    """User + system time a process has used so far (from /proc, in clock ticks)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_a_node_whose_spool_went_away_waits_near_idle_and_resumes_when_it_returns(pipeline, tmp_path, start_node):
    spool, away = tmp_path / "spool", tmp_path / "spool-away"
    write_script(pipeline, "job", "#!/bin/sh\necho ran\n", executable=True)
    hub = start_node("hub", "--spool", spool, "--pipeline", pipeline, "--settle", "0.2")
    wait_for(lambda: (spool / "hub.json").exists(), message="the hub to start")

    spool.rename(away)  # the mount went away: every path under the spool fails
    wait_for(lambda: "claiming nothing until" in hub.stderr(), message="the node to say it is blocked")
    before, started = cpu_seconds(hub.proc.pid), time.monotonic()
    wait_for(lambda: time.monotonic() - started >= 3.0, timeout=10, message="a 3 s window of being blocked")
    share = (cpu_seconds(hub.proc.pid) - before) / (time.monotonic() - started)
    assert share < 0.05, f"a blocked node used {share:.0%} of a CPU: it spins instead of backing off"

    away.rename(spool)
    name = emit("job", {}, spool=spool).name
    wait_for(lambda: outcomes(spool).get(name) == ["done"], timeout=20, message="the event once the spool is back")
    assert "resuming" in hub.stderr()
