"""Signals reach only what this node started: never a pid read from a file, never another instance's process.

A worker stops a build through the process it started itself (its own child,
not yet reaped); `trivialci up` stops only the workers whose process carries
its own mark, proven through a pidfd. Real workers, real `up` trees, real
foreign processes that must survive.
"""

import json
import os
import signal
import socket
import subprocess

import pytest
from conftest import _processes_mentioning, gated_build, pid_alive, run_cli, wait_for
from test_flow import BUILD_OK, origin, store_jobs  # noqa: F401 (origin is a fixture)
from test_hostile_events import JOB, assert_refused, outcome_of, package, statuses_of, to_worker, worker  # noqa: F401

from trivialci.spool.processes import start_ticks
from trivialci.up import local_worker_pids


@pytest.fixture
def foreign():
    """A process in a session of its own that nothing of TrivialCi started."""
    process = subprocess.Popen(["sleep", "120"], start_new_session=True)
    yield process
    process.kill()
    process.wait()


@pytest.mark.parametrize("record", ["plain", "with_start_time"])
def test_cancel_work_never_signals_a_process_group_that_a_pid_file_names(worker, foreign, record):
    jobs = worker["workdir"] / "jobs"
    jobs.mkdir(parents=True, exist_ok=True)
    forged = {"plain": str(foreign.pid),
              "with_start_time": json.dumps({"pid": foreign.pid, "start_ticks": start_ticks(foreign.pid)})}[record]
    (jobs / f"{JOB}.pid").write_text(forged)

    delivered = to_worker(worker, "cancel_work", {"job": JOB, "attempt": 1, "status": "CANCELLED",
                                                  "reason": "cancelled by request"})

    where, log = outcome_of(worker["root"], delivered)
    assert where == "done" and "it will not build" in log, log
    assert foreign.poll() is None, "a process group that a .pid file named was signalled"


def test_cancel_work_stops_the_build_this_worker_started(worker, origin):
    sha = origin.commit("main", {"build": gated_build(after="echo released\n")})
    to_worker(worker, "start_work", package(origin, sha))
    pid_record = worker["workdir"] / "jobs" / f"{JOB}.pid"
    wait_for(pid_record.exists, timeout=60, message="the build to start")

    delivered = to_worker(worker, "cancel_work", {"job": JOB, "attempt": 1, "status": "SUPERSEDED",
                                                  "reason": "a newer push of main"})

    assert "stopping its build" in outcome_of(worker["root"], delivered)[1]
    wait_for(lambda: "SUPERSEDED" in statuses_of(worker["spool"], JOB), timeout=30, message="the SUPERSEDED report")
    script = str(worker["workdir"] / "jobs" / JOB / ".trivialci" / "build")
    assert not _processes_mentioning(script), "the build (its shell, its sandbox) is gone once it is reported"
    assert "released" not in (worker["workdir"] / "logs" / f"{JOB}.log").read_text()


def up_args(origin, tmp_path):
    return ("up", "--repo", origin.bare, "--spool", tmp_path / "spool", "--store", f"file://{tmp_path / 'store'}",
            "--workdir", tmp_path / "ciwork", "--ui", "off")


def test_up_never_signals_a_process_that_a_worker_json_names(origin, tmp_path, start_node, foreign):
    origin.commit("main", {})  # nothing to build: no worker is booted
    fake = tmp_path / "spool" / "workers" / "fake"
    fake.mkdir(parents=True)
    (fake / "worker.json").write_text(json.dumps({"pid": foreign.pid, "host": socket.gethostname(), "kind": "build"}))
    up = start_node(*up_args(origin, tmp_path))
    wait_for(lambda: list((tmp_path / "spool" / "done").glob("*/*-branch_update.*.log")), timeout=60,
             message="the hub to handle the push")

    assert up.stop(signal.SIGINT, timeout=60) == 0, up.stderr()
    assert foreign.poll() is None, "up signalled a process it did not start"


def test_a_second_up_on_the_same_spool_is_refused_and_leaves_the_first_ones_worker_alone(origin, tmp_path,
                                                                                           start_node):
    origin.commit("main", {"build": BUILD_OK})
    first = start_node(*up_args(origin, tmp_path))
    try:
        wait_for(lambda: store_jobs(tmp_path / "store"), timeout=60, message="the first up to build")
        [worker_pid] = wait_for(lambda: local_worker_pids(tmp_path / "spool"), message="the first up's worker")
        born = start_ticks(worker_pid)

        second = run_cli(*up_args(origin, tmp_path), timeout=90)

        assert second.returncode == 3 and "already run by pid" in second.stderr, second.stderr
        assert start_ticks(worker_pid) == born, "the second up signalled the first one's worker"
        assert first.stop(signal.SIGINT, timeout=60) == 0, first.stderr()
        wait_for(lambda: not pid_alive(worker_pid), message="the first up to stop the worker it started")
    finally:
        if first.proc.poll() is None:
            first.stop(signal.SIGINT, timeout=60)
        for pid in local_worker_pids(tmp_path / "spool"):
            os.kill(pid, signal.SIGKILL)
