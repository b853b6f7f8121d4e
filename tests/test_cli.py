"""The command line as a person meets it: what it accepts, and how it says no.

A refusal is one line on stderr and an exit status: 2 for bad input, 3 for a
node directory that a live process already runs, 4 when the spool cannot be
used. A refused emit writes nothing.
"""

import json
import os
import socket
import subprocess
import time

import pytest
from conftest import records, run_cli, wait_for, write_script

from trivialci.spool.event import MAX_EVENT_BYTES
from trivialci.spool.processes import start_ticks

HOST = socket.gethostname()
NO_SPOOL_ENV = {"TRIVIALCI_SPOOL": ""}  # an empty variable counts as unset


def refusal(result, exit_code: int) -> str:
    """The one line a refused command printed; fails unless it is exactly one line, no traceback."""
    assert result.returncode == exit_code, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got:\n{result.stderr}"
    return lines[0]


def delivered_or_staged(spool) -> list[str]:
    """Whatever an emit left in the hub's inbox/ or tmp/ (nothing, when it refused)."""
    return [f"{where}/{name}" for where in ("inbox", "tmp") if (spool / where).is_dir()
            for name in os.listdir(spool / where)]


def dead_pid() -> int:
    """The pid of a process that has exited and been reaped."""
    finished = subprocess.Popen(["true"])
    finished.wait()
    return finished.pid


# --- emit -------------------------------------------------------------------------------------

TOO_BIG = json.dumps({"a": "x" * MAX_EVENT_BYTES})

BAD_EMITS = {
    "upper_case_type": (["Hello", "{}"], "bad event type"),
    "type_with_a_space": (["my event", "{}"], "bad event type"),
    "type_with_a_dot": (["a.b", "{}"], "bad event type"),
    "type_starting_with_a_digit": (["1x", "{}"], "bad event type"),
    "empty_type": (["", "{}"], "bad event type"),
    "json_array": (["hello", "[1, 2]"], "not an object"),
    "json_string": (["hello", '"text"'], "not an object"),
    "invalid_json": (["hello", '{"a": '], "not valid JSON"),
    "nan": (["hello", '{"a": NaN}'], "NaN"),
    "over_the_size_limit": (["hello", TOO_BIG], "over the limit"),
}


@pytest.mark.parametrize("args, words", list(BAD_EMITS.values()), ids=list(BAD_EMITS))
def test_emit_refuses_bad_input_with_one_line_and_writes_nothing(args, words, spool):
    line = refusal(run_cli("emit", *args, "--spool", spool), 2)
    assert words in line, line
    assert delivered_or_staged(spool) == []


def test_emit_refuses_a_payload_file_over_the_size_limit(spool, tmp_path):
    big = tmp_path / "big.json"
    big.write_text(TOO_BIG)
    line = refusal(run_cli("emit", "hello", f"@{big}", "--spool", spool), 2)
    assert "over the limit" in line
    assert delivered_or_staged(spool) == []


def test_emit_without_a_spool_says_how_to_give_one():
    line = refusal(run_cli("emit", "hello", "{}", env=NO_SPOOL_ENV), 2)
    assert "--spool" in line and "--help" in line, line


def test_emit_takes_the_spool_from_the_environment(spool):
    emitted = run_cli("emit", "hello", '{"via": "env"}', env={"TRIVIALCI_SPOOL": str(spool)})
    assert emitted.returncode == 0, emitted.stderr
    [name] = os.listdir(spool / "inbox")
    assert json.loads((spool / "inbox" / name).read_text()) == {"via": "env"}


def test_emit_reads_the_payload_from_a_file(spool, tmp_path):
    payload = tmp_path / "payload.json"
    payload.write_text('{"from": "a file", "n": [1, 2]}\n')
    emitted = run_cli("emit", "hello", f"@{payload}", "--spool", spool)
    assert emitted.returncode == 0, emitted.stderr
    delivered = emitted.stdout.strip()
    assert os.path.dirname(delivered) == str(spool / "inbox") and os.path.basename(delivered).startswith("hello.")
    assert json.loads(open(delivered).read()) == {"from": "a file", "n": [1, 2]}
    assert os.listdir(spool / "tmp") == [], "nothing is left staged"


def test_emit_reads_the_payload_from_stdin(spool):
    emitted = run_cli("emit", "hello", "-", "--spool", spool, input='{"from": "stdin"}')
    assert emitted.returncode == 0, emitted.stderr
    [name] = os.listdir(spool / "inbox")
    assert json.loads((spool / "inbox" / name).read_text()) == {"from": "stdin"}


def test_emit_from_a_missing_file_is_refused(spool, tmp_path):
    line = refusal(run_cli("emit", "hello", f"@{tmp_path / 'missing.json'}", "--spool", spool), 2)
    assert "missing.json" in line
    assert delivered_or_staged(spool) == []


def test_emit_to_a_missing_worker_is_refused_with_a_hint(spool):
    run_cli("emit", "hello", "{}", "--spool", spool)  # the spool exists, the worker does not
    line = refusal(run_cli("emit", "hello", "{}", "--spool", spool, "--to", "worker:nobody"), 2)
    assert "nobody" in line and "worker" in line, line
    assert not (spool / "workers" / "nobody").exists(), "emit does not invent a worker"


def test_emit_to_a_bad_worker_name_is_refused(spool):
    line = refusal(run_cli("emit", "hello", "{}", "--spool", spool, "--to", "worker:../x"), 2)
    assert "bad worker name" in line, line


def test_emit_to_an_existing_worker_delivers_into_its_inbox_and_the_worker_runs_it(spool, pipeline):
    write_script(pipeline, "hello", "#!/bin/sh\necho worker ran\n", executable=True)
    assert run_cli("worker", "--spool", spool, "--name", "w1", "--pipeline", pipeline, "--drain").returncode == 0

    emitted = run_cli("emit", "hello", '{"for": "w1"}', "--spool", spool, "--to", "worker:w1")

    assert emitted.returncode == 0, emitted.stderr
    worker_root = spool / "workers" / "w1"
    assert os.path.dirname(emitted.stdout.strip()) == str(worker_root / "inbox")
    assert delivered_or_staged(spool) == [], "nothing went to the hub"
    drained = run_cli("worker", "--spool", spool, "--name", "w1", "--pipeline", pipeline, "--drain")
    assert drained.returncode == 0, drained.stderr
    assert [r["status"] for r in records(worker_root)] == ["done"]


def test_emit_to_a_node_directory_by_path(spool):
    run_cli("emit", "hello", "{}", "--spool", spool)
    emitted = run_cli("emit", "hello", '{"by": "path"}', "--spool", spool, "--to", spool)
    assert emitted.returncode == 0, emitted.stderr
    assert os.path.dirname(emitted.stdout.strip()) == str(spool / "inbox")


def test_emit_into_a_spool_that_cannot_be_made_fails_with_status_4(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    line = refusal(run_cli("emit", "hello", "{}", "--spool", blocker / "spool"), 4)
    assert str(blocker / "spool") in line, line


# --- help ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("command", [[], ["hub"], ["worker"], ["emit"], ["status"]],
                         ids=["trivialci", "hub", "worker", "emit", "status"])
def test_help_works_for_every_command(command):
    for flag in ("--help", "-h"):
        shown = run_cli(*command, flag, env=NO_SPOOL_ENV)
        assert shown.returncode == 0, shown.stderr
        assert shown.stdout.startswith("Usage: trivialci") and shown.stderr == ""


# --- status -------------------------------------------------------------------------------------

def test_status_shows_a_running_hub_and_a_running_worker(spool, pipeline, start_node):
    hub = start_node("hub", "--spool", spool, "--pipeline", pipeline)
    worker = start_node("worker", "--spool", spool, "--name", "w1", "--pipeline", pipeline)
    wait_for(lambda: (spool / "hub.json").exists() and (spool / "workers" / "w1" / "worker.json").exists(),
             message="both heartbeats")

    shown = run_cli("status", "--spool", spool)

    assert shown.returncode == 0, shown.stderr
    rows = {line.split()[0]: line for line in shown.stdout.splitlines()[2:] if line.strip()}
    assert f"up, pid {hub.proc.pid} on {HOST}" in rows["hub"], shown.stdout
    assert f"up, pid {worker.proc.pid} on {HOST}" in rows["w1"], shown.stdout

    as_json = json.loads(run_cli("status", "--spool", spool, "--json").stdout)
    beats = {node["node"]: node["heartbeat"] for node in as_json["nodes"]}
    assert beats["hub"]["pid"] == hub.proc.pid and beats["w1"]["pid"] == worker.proc.pid
    assert beats["w1"]["kind"] == "build" and beats["w1"]["host"] == HOST


def test_status_shows_a_stopped_node_as_not_running(spool, pipeline):
    assert run_cli("worker", "--spool", spool, "--name", "w1", "--pipeline", pipeline, "--drain").returncode == 0
    shown = run_cli("status", "--spool", spool)
    assert shown.returncode == 0, shown.stderr
    rows = {line.split()[0]: line for line in shown.stdout.splitlines()[2:] if line.strip()}
    assert "not running" in rows["hub"] and "not running" in rows["w1"], shown.stdout


def test_status_of_a_missing_spool_is_refused(tmp_path):
    line = refusal(run_cli("status", "--spool", tmp_path / "nowhere"), 2)
    assert "nowhere" in line
    assert not (tmp_path / "nowhere").exists()


# --- one process per node directory ----------------------------------------------------------

@pytest.mark.parametrize("node", [["hub"], ["worker", "--name", "w1"]], ids=["hub", "worker"])
def test_a_second_node_on_a_live_node_directory_exits_3_naming_the_first(node, spool, pipeline, start_node):
    first = start_node(*node, "--spool", spool, "--pipeline", pipeline)
    root = spool if node == ["hub"] else spool / "workers" / "w1"
    heartbeat = root / ("hub.json" if node == ["hub"] else "worker.json")
    wait_for(heartbeat.exists, message="the first node to start")

    second = run_cli(*node, "--spool", spool, "--pipeline", pipeline, timeout=20)

    line = refusal(second, 3)
    assert f"pid {first.proc.pid}" in line and HOST in line, line
    assert first.proc.poll() is None, "the first node goes on"
    assert json.loads((root / "node.lock").read_text())["pid"] == first.proc.pid


def write_lock(spool, **holder):
    spool.mkdir(parents=True, exist_ok=True)
    lock = spool / "node.lock"
    lock.write_text(json.dumps({"started": "2000-01-01T00:00:00Z", **holder}))
    return lock


def hub_drains(spool, pipeline):
    write_script(pipeline, "hello", "#!/bin/sh\necho hi\n", executable=True)
    assert run_cli("emit", "hello", "{}", "--spool", spool).returncode == 0
    return run_cli("hub", "--spool", spool, "--pipeline", pipeline, "--drain", timeout=20)


def test_a_lock_left_by_a_dead_process_on_this_host_is_taken_over(spool, pipeline):
    lock = write_lock(spool, host=HOST, pid=dead_pid(), start_ticks=1)

    drained = hub_drains(spool, pipeline)

    assert drained.returncode == 0, drained.stderr
    assert [r["status"] for r in records(spool)] == ["done"]
    assert not lock.exists(), "the new hub released the lock it took over"


def test_a_lock_whose_pid_now_belongs_to_another_process_is_taken_over(spool, pipeline):
    write_lock(spool, host=HOST, pid=os.getpid(), start_ticks=start_ticks(os.getpid()) - 1)
    drained = hub_drains(spool, pipeline)
    assert drained.returncode == 0, drained.stderr
    assert [r["status"] for r in records(spool)] == ["done"]


def test_a_lock_held_by_a_live_process_is_respected(spool, pipeline):
    lock = write_lock(spool, host=HOST, pid=os.getpid(), start_ticks=start_ticks(os.getpid()))
    line = refusal(hub_drains(spool, pipeline), 3)
    assert f"pid {os.getpid()} on {HOST}" in line, line
    assert records(spool) == [] and lock.exists()


def test_a_lock_of_another_host_is_respected_until_it_goes_stale(spool, pipeline):
    lock = write_lock(spool, host="elsewhere.example", pid=1, start_ticks=1)
    line = refusal(hub_drains(spool, pipeline), 3)
    assert "pid 1 on elsewhere.example" in line, line

    an_hour_ago = time.time() - 3600
    os.utime(lock, (an_hour_ago, an_hour_ago))
    drained = run_cli("hub", "--spool", spool, "--pipeline", pipeline, "--drain", timeout=20)
    assert drained.returncode == 0, drained.stderr
    assert [r["status"] for r in records(spool)] == ["done"]


# --- bad node arguments -------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["bad/name", "hub", "..", "-x", "x" * 64])
def test_a_worker_with_a_bad_name_is_refused(name, spool):
    line = refusal(run_cli("worker", "--spool", spool, f"--name={name}"), 2)
    assert "bad worker name" in line, line
    assert not spool.exists(), "nothing was created"


@pytest.mark.parametrize("args", [["--jobs", "0"], ["--timeout", "0"], ["--grace", "-1"], ["--bogus"]])
def test_a_bad_node_option_is_refused_in_one_line(args, spool):
    line = refusal(run_cli("hub", "--spool", spool, *args), 2)
    assert args[0] in line and "trivialci hub --help" in line, line
    assert not spool.exists()


def test_a_node_with_a_missing_pipeline_directory_is_refused(spool, tmp_path):
    line = refusal(run_cli("hub", "--spool", spool, "--pipeline", tmp_path / "nope", "--drain"), 2)
    assert "pipeline" in line, line


def test_a_worker_on_a_spool_without_a_hub_says_to_check_the_mount(tmp_path):
    done = run_cli("worker", "--spool", tmp_path / "mnt", "--name", "w1", "--drain", "--log-listen", "off",
                   "--workdir", tmp_path / "disk")
    assert done.returncode == 0, done.stderr
    assert "has no inbox/ of a hub yet: start the hub first, or check that the hub's spool is mounted there" \
        in done.stderr


def test_a_worker_whose_outbox_cannot_be_made_exits_4_naming_it(tmp_path):
    (tmp_path / "disk").mkdir()
    (tmp_path / "disk" / "outbox").write_text("a file where the outbox should be")
    done = run_cli("worker", "--spool", tmp_path / "spool", "--name", "w1", "--drain", "--outbox", "always",
                   "--log-listen", "off", "--workdir", tmp_path / "disk")
    assert done.returncode == 4 and "Traceback" not in done.stderr, done.stderr
    assert done.stderr.strip().endswith("Not a directory (the worker's --workdir must be on its own disk, "
                                        "writable, not full)")
