"""SIGTERM: a node lets short scripts finish, stops long ones, and keeps their events for the next start."""

import os
import signal

import pytest
from conftest import events_in, leftovers, outcomes, pid_alive, records, run_cli, wait_for, write_script

pytestmark = pytest.mark.usefixtures("both_launchers")  # scripts forked, then spawned


def drop(spool, *names):
    (spool / "inbox").mkdir(parents=True, exist_ok=True)
    for name in names:
        (spool / "inbox" / name).write_text('{"n": 1}')


def pid_of(pid_file):
    return wait_for(lambda: pid_file.exists() and int(pid_file.read_text().split()[0]), message=f"{pid_file.name}")


# A first attempt that outlives --grace: one that dies on SIGTERM, and one that ignores it.
LONG_FIRST_ATTEMPTS = {"obeys_sigterm": "", "ignores_sigterm": "trap '' TERM\n"}


@pytest.mark.parametrize("trap", list(LONG_FIRST_ATTEMPTS.values()), ids=list(LONG_FIRST_ATTEMPTS))
def test_sigterm_stops_a_long_script_and_the_next_start_runs_it_again(trap, spool, pipeline, tmp_path, start_node):
    pid_file = tmp_path / "script.pid"
    write_script(pipeline, "slow", f'#!/bin/sh\n[ "$TRIVIALCI_ATTEMPT" = 1 ] || exit 0\n{trap}'
                 f'echo $$ > "{pid_file}.tmp" && mv "{pid_file}.tmp" "{pid_file}"\nexec sleep 60\n', executable=True)
    drop(spool, "slow.json")
    node = start_node("hub", "--spool", spool, "--pipeline", pipeline, "--grace", "0.5")
    script = pid_of(pid_file)
    try:
        assert node.stop(signal.SIGTERM, timeout=10) == 0, node.stderr()
        assert not pid_alive(script), "the node stopped its script before exiting"
    finally:
        if pid_alive(script):
            os.kill(script, signal.SIGKILL)

    assert outcomes(spool) == {} and events_in(spool, "done") == [] and events_in(spool, "failed") == []
    [kept] = [p.name for p in (spool / "work").glob("*.json.*@hub")]
    assert kept.endswith("-slow.json.1@hub"), "the event stays in work/ as attempt 1"

    again = run_cli("hub", "--spool", spool, "--pipeline", pipeline, "--drain", "--grace", "0.5")
    assert again.returncode == 0, again.stderr
    [result] = records(spool, "done")
    assert result["event"] == "slow.json" and result["attempt"] == 2 and result["status"] == "done"
    assert leftovers(spool) == []


def test_sigterm_lets_a_short_script_finish_and_claims_nothing_more(spool, pipeline, tmp_path, start_node):
    started, gate = tmp_path / "started", tmp_path / "gate"
    write_script(pipeline, "short", f'#!/bin/sh\necho $$ > "{started}"\n'
                 f'while [ ! -e "{gate}" ]; do sleep 0.02; done\n', executable=True)
    drop(spool, "short.1.json", "short.2.json")
    node = start_node("hub", "--spool", spool, "--pipeline", pipeline, "--grace", "30")
    pid_of(started)

    node.proc.send_signal(signal.SIGTERM)
    wait_for(lambda: "SIGTERM received" in node.stderr(), message="the node to take the SIGTERM")
    gate.touch()  # the script ends well within its grace
    assert node.proc.wait(10) == 0, node.stderr()

    [result] = records(spool, "done")
    assert result["event"] == "short.1.json" and result["attempt"] == 1 and result["exit_code"] == 0
    assert leftovers(spool) == ["inbox/short.2.json"], "a stopping node claims nothing more"


def test_a_second_signal_cuts_the_grace_short(spool, pipeline, tmp_path, start_node):
    pid_file = tmp_path / "script.pid"
    write_script(pipeline, "slow", f'#!/bin/sh\necho $$ > "{pid_file}.tmp" && mv "{pid_file}.tmp" "{pid_file}"\n'
                 "exec sleep 120\n", executable=True)
    drop(spool, "slow.json")
    node = start_node("hub", "--spool", spool, "--pipeline", pipeline, "--grace", "100")
    script = pid_of(pid_file)
    try:
        node.proc.send_signal(signal.SIGINT)
        wait_for(lambda: "SIGINT received" in node.stderr(), message="the first signal to be taken")
        node.proc.send_signal(signal.SIGINT)
        assert node.proc.wait(timeout=20) == 0, "the second signal did not wait out the 100 s grace"
        assert not pid_alive(script)
    finally:
        if pid_alive(script):
            os.kill(script, signal.SIGKILL)
    assert [p.name.endswith("-slow.json.1@hub") for p in (spool / "work").glob("*@hub")] == [True]


def test_drain_stops_cleanly_on_sigterm(spool, pipeline, tmp_path, start_node):
    pid_file = tmp_path / "script.pid"
    write_script(pipeline, "slow", f'#!/bin/sh\necho $$ > "{pid_file}.tmp" && mv "{pid_file}.tmp" "{pid_file}"\n'
                 "exec sleep 120\n", executable=True)
    drop(spool, "slow.json")
    node = start_node("hub", "--spool", spool, "--pipeline", pipeline, "--drain", "--grace", "0.2")
    script = pid_of(pid_file)
    try:
        assert node.stop(signal.SIGTERM, timeout=10) == 0, node.stderr()
        assert not pid_alive(script), "the script was stopped with the node"
    finally:
        if pid_alive(script):
            os.kill(script, signal.SIGKILL)
    assert not (spool / "node.lock").exists() and not (spool / "hub.json").exists()
    assert len(list((spool / "work").glob("*-slow.json.1@hub"))) == 1


def test_a_stop_asked_during_start_up_is_a_clean_stop(spool, pipeline, start_node):
    """SIGTERM between opening the node directory and serving (a worker just advertised its heartbeat)."""
    write_script(pipeline, "job", "#!/bin/sh\nexit 0\n", executable=True)
    drop(spool, "job.json")
    node = start_node("hub", "--spool", spool, "--pipeline", pipeline, env={"TRIVIALCI_TEST_TERM_AT": "opened"})
    assert node.proc.wait(20) == 0, node.stderr()
    assert "SIGTERM received; stopping" in node.stderr() and "hub: stopped" in node.stderr()
    assert not (spool / "hub.json").exists() and not (spool / "node.lock").exists(), "it closed like any stop"
