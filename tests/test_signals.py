"""Signals reach only what this node started: never a pid read from a file.

A worker stops a build through the process it started itself (its own child,
not yet reaped). Real workers, real builds, real foreign processes that must survive.
"""

import json
import os
import signal
import subprocess

import pytest
from conftest import pid_alive, wait_for
from test_flow import origin, slow_build  # noqa: F401 (origin is a fixture)
from test_hostile_events import JOB, assert_refused, outcome_of, package, statuses_of, to_worker, worker  # noqa: F401

from trivialci.spool.processes import start_ticks


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


def test_cancel_work_stops_the_build_this_worker_started(worker, origin, tmp_path):
    gate = tmp_path / "gate"
    sha = origin.commit("main", {"build": slow_build(gate)})
    to_worker(worker, "start_work", package(origin, sha))
    build_pid = int(wait_for(lambda: (tmp_path / "gate.started").exists() and (tmp_path / "gate.started").read_text()
                             .strip(), timeout=60, message="the build to start"))

    delivered = to_worker(worker, "cancel_work", {"job": JOB, "attempt": 1, "status": "SUPERSEDED",
                                                  "reason": "a newer push of main"})

    assert "stopping its build" in outcome_of(worker["root"], delivered)[1]
    wait_for(lambda: "SUPERSEDED" in statuses_of(worker["spool"], JOB), timeout=30, message="the SUPERSEDED report")
    assert not pid_alive(build_pid) and not gate.exists()
