"""`trivialci up` talks in jobs: one line per job change, warnings, and the nodes' own log in a file."""

import json
import os
import re
import signal

from conftest import wait_for
from gitrepo import IDENTITY, Origin, git
from test_flow import BUILD_FAILS, BUILD_OK

from trivialci.cli.upconsole import JobConsole
from trivialci.spool.layout import hub_dir
from trivialci.up import local_worker_pids


def executable(origin: Origin, name: str, text: str) -> None:
    path = origin.work / ".trivialci" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(0o755)


def commit(origin: Origin, message: str, *paths: str) -> str:
    git("add", "-f", *paths, cwd=origin.work)
    git(*IDENTITY, "commit", "-q", "-m", message, cwd=origin.work)
    return git("rev-parse", "HEAD", cwd=origin.work)


def test_up_prints_one_line_per_job_change_and_keeps_the_node_log_in_a_file(tmp_path, start_node):
    origin = Origin(tmp_path)
    (origin.work / ".gitignore").write_text("*.pyc\nbuild\n")
    executable(origin, "build", BUILD_OK)
    first = commit(origin, "a first commit", ".gitignore")  # .trivialci/build is ignored: not in it
    up = start_node("up", "--repo", origin.work, "--spool", tmp_path / "spool", "--store",
                    f"file://{tmp_path / 'store'}", "--workdir", tmp_path / "ciwork", "--ui", "127.0.0.1:0")
    try:
        warning = wait_for(lambda: re.search(r"warning: \.trivialci/build is ignored by \.gitignore:2:build.*",
                                             up.stderr()), timeout=30, message="the .gitignore warning").group(0)
        assert "git add -f .trivialci/build" in warning
        wait_for(lambda: f"main {first[:7]}: nothing to build" in up.stderr(), timeout=60,
                 message="the push that built nothing, said on the console")
        sha = commit(origin, "builds now", ".trivialci/build")
        line = wait_for(lambda: re.search(rf"main {sha[:7]} build PASSED \d+\.\ds http://127\.0\.0\.1:\d+/jobs/\S+",
                                          up.stderr()), timeout=90, message="the PASSED line").group(0)
        executable(origin, "build", BUILD_FAILS)
        failed = commit(origin, "breaks it", ".trivialci/build")
        wait_for(lambda: re.search(rf"main {failed[:7]} build FAILED \d+\.\ds \(exit status 3[^)]*\) http://",
                                   up.stderr()), timeout=90, message="the FAILED line with its reason")
    finally:
        assert up.stop(signal.SIGINT, timeout=60) == 0, up.stderr()
        for pid in local_worker_pids(tmp_path / "spool"):
            os.kill(pid, signal.SIGKILL)
    console = up.stderr()
    assert console.count(f"main {sha[:7]} build queued") == 1, console
    started = console.index(f"main {sha[:7]} build started on build-1\n")  # even when it ended between two looks
    assert console.index(f"main {sha[:7]} build queued") < started < console.index(line)
    assert line in console
    log = (tmp_path / "ciwork" / "up.log").read_text()
    assert f"  log       {tmp_path / 'ciwork' / 'up.log'}" in console
    assert "handled" in log or "done" in log, "the nodes log into up.log"
    assert "tick" not in console and "work_required" not in console, "housekeeping stays in the log file"


def test_up_verbose_shows_the_nodes_log_on_the_console_too(tmp_path, start_node):
    origin = Origin(tmp_path)
    origin.commit({"README": "x"})
    up = start_node("up", "--repo", origin.bare, "--spool", tmp_path / "spool", "--store",
                    f"file://{tmp_path / 'store'}", "--workdir", tmp_path / "ciwork", "--ui", "off", "--verbose")
    try:
        wait_for(lambda: "gitwatcher: watching" in up.stderr() and " hub: handling " in up.stderr(), timeout=30,
                 message="the nodes' own lines on the console")
    finally:
        assert up.stop(signal.SIGINT, timeout=60) == 0, up.stderr()
    assert "gitwatcher: watching" in (tmp_path / "ciwork" / "up.log").read_text()


JOB = {"job": "20261202T094904Z-6d8e2e", "repo": "/r.git", "branch": "main", "sha": "066fcd4" + "0" * 33,
       "kind": "build", "attempt": 1, "worker": "build-1", "run_time": 0.04}


def test_a_job_that_went_further_between_two_looks_is_told_queued_started_and_ended_in_order(tmp_path):
    """A fast hub queues, hands over and ends a job within one look: the console still tells each change once."""
    spool = tmp_path / "spool"
    hub_dir(spool).create()
    lines = []
    console = JobConsole(spool, "http://127.0.0.1:8080/", tmp_path / "up.log", lines.append)
    jobs = spool / "state" / "jobs"
    jobs.mkdir(parents=True, exist_ok=True)
    (jobs / f"{JOB['job']}.json").write_text(json.dumps({**JOB, "status": "PASSED"}))
    console.poll()
    console.poll()
    assert lines == ["main 066fcd4 build queued", "main 066fcd4 build started on build-1",
                     f"main 066fcd4 build PASSED 0.0s http://127.0.0.1:8080/jobs/{JOB['job']}"]


def test_a_job_skipped_while_it_waited_is_not_told_queued(tmp_path):
    spool = tmp_path / "spool"
    hub_dir(spool).create()
    lines = []
    console = JobConsole(spool, None, tmp_path / "up.log", lines.append)
    jobs = spool / "state" / "jobs"
    jobs.mkdir(parents=True, exist_ok=True)
    waiting = {key: value for key, value in JOB.items() if key != "worker"}
    (jobs / f"{JOB['job']}.json").write_text(json.dumps({**waiting, "status": "WAITING", "stage": 10}))
    console.poll()
    (jobs / f"{JOB['job']}.json").write_text(json.dumps({**waiting, "status": "SKIPPED", "reason": "skipped: x"}))
    console.poll()
    assert [line.split(" ", 3)[3] for line in lines] == [
        "waits for an earlier stage (stage 10)", f"SKIPPED 0.0s (skipped: x) ({JOB['job']})"]


def test_a_job_whose_state_was_rebuilt_while_it_ran_is_still_told_started_and_ended(tmp_path):
    """`rm -r state/` while a job runs: the console does not lose it (a new user's session lost one)."""
    spool = tmp_path / "spool"
    hub_dir(spool).create()
    lines = []
    console = JobConsole(spool, None, tmp_path / "up.log", lines.append)
    state = spool / "state"
    (state / "jobs").mkdir(parents=True)
    (state / ".built").write_text("{}")
    record = state / "jobs" / f"{JOB['job']}.json"
    record.write_text(json.dumps({**JOB, "status": "QUEUED", "worker": None}))
    console.poll()
    os.rename(state, spool / "state.old")  # removed by a person; the hub rebuilds it at its next event
    console.poll()
    (state / "jobs").mkdir(parents=True)  # the rebuild has begun: jobs/ made, .built not yet
    console.poll()
    record.write_text(json.dumps({**JOB, "status": "BUILDING"}))
    (state / ".built").write_text("{}")
    console.poll()
    record.write_text(json.dumps({**JOB, "status": "PASSED"}))
    console.poll()
    assert [line.split(" ", 3)[3] for line in lines] == ["queued", "started on build-1", f"PASSED 0.0s ({JOB['job']})"]


def test_a_job_whose_record_was_removed_by_hand_from_a_complete_state_is_no_longer_looked_at(tmp_path):
    spool = tmp_path / "spool"
    hub_dir(spool).create()
    console = JobConsole(spool, None, tmp_path / "up.log", [].append)
    (spool / "state" / "jobs").mkdir(parents=True)
    (spool / "state" / ".built").write_text("{}")
    record = spool / "state" / "jobs" / f"{JOB['job']}.json"
    record.write_text(json.dumps({**JOB, "status": "QUEUED", "worker": None}))
    console.poll()
    record.unlink()
    console.poll()
    assert console.active == set()
