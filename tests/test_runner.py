"""The script contract: how a node runs the script for an event, and how it stops it.

argv[1] is the event as base64 JSON and stdin the same bytes; the protocol's
variables are in the environment; TYPE.py, an executable TYPE or TYPE.* is the
script; a timeout stops the whole process group and every process that carries
the event's marks, daemons included.
"""

import json
import os
import signal
import sys

import pytest
from conftest import events_in, leftovers, pid_alive, records, run_cli, wait_for, write_script

pytestmark = pytest.mark.usefixtures("both_launchers")  # scripts forked, then spawned

# Writes what the script was given into the file the event names, as JSON.
REPORTER = """\
import base64, json, os, sys

stdin = sys.stdin.buffer.read()
report = {
    "argv": sys.argv[1:],
    "argv_decoded": base64.b64decode(sys.argv[1], validate=True).decode("utf-8"),
    "stdin": stdin.decode("utf-8"),
    "event_file_at_run_time": open(os.environ["TRIVIALCI_EVENT_FILE"], encoding="utf-8").read(),
    "env": {key: value for key, value in os.environ.items() if key.startswith("TRIVIALCI_")},
}
with open(json.loads(stdin)["report"], "w") as handle:
    json.dump(report, handle)
print("reported to the log")
"""


def drain(node_root_args, pipeline, *args, timeout=30):
    return run_cli(*node_root_args, "--pipeline", pipeline, "--drain", "--settle", "0.2", "--grace", "0.5", *args,
                   timeout=timeout)


def drop(inbox, name, data: bytes):
    inbox.mkdir(parents=True, exist_ok=True)
    (inbox / name).write_bytes(data)


def read_pid(pid_file):
    return wait_for(lambda: pid_file.exists() and int(pid_file.read_text().split()[0]), timeout=10,
                    message=f"{pid_file.name}")


def kill_quietly(pids):
    """Clean up what a test started; only pids still alive, so that no reused pid is hit."""
    for pid in pids:
        if pid and pid_alive(pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def pid_files_written_by(directory):
    return [int(p.read_text().split()[0]) for p in directory.glob("*.pid")]


def survivors(pids: dict) -> dict:
    return {name: pid for name, pid in pids.items() if pid_alive(pid)}


def log_of(event_path):
    return event_path.with_name(event_path.name[: -len(".json")] + ".log").read_text()


# --- argv, stdin and environment -------------------------------------------------------------

def test_argv_and_stdin_carry_exactly_the_dropped_bytes(spool, pipeline, tmp_path):
    write_script(pipeline, "report.py", REPORTER)
    report = tmp_path / "report.json"
    dropped = ('{ "report": "%s",\n  "text": "caf\u00e9 \u2603", "n" : [1, 2.50] }\n' % report).encode()
    drop(spool / "inbox", "report.json", dropped)

    drained = drain(("hub", "--spool", spool), pipeline)

    assert drained.returncode == 0, drained.stderr
    seen = json.loads(report.read_text())
    assert len(seen["argv"]) == 1, "the event is the one and only argument"
    assert seen["argv_decoded"].encode() == dropped, "argv[1] is base64 of the dropped bytes, not a re-encoding"
    assert seen["stdin"].encode() == dropped
    assert seen["event_file_at_run_time"].encode() == dropped
    [event] = events_in(spool, "done")
    assert event.read_bytes() == dropped, "the recorded event is the dropped file itself"
    assert "reported to the log" in log_of(event)


def test_the_environment_names_the_event_the_node_and_the_log_of_a_hub(spool, pipeline, tmp_path):
    write_script(pipeline, "report.py", REPORTER)
    report = tmp_path / "report.json"
    drop(spool / "inbox", "report.env.json", json.dumps({"report": str(report)}).encode())

    assert drain(("hub", "--spool", spool), pipeline).returncode == 0

    env = json.loads(report.read_text())["env"]
    [result] = records(spool)
    work = spool / "work"
    assert env["TRIVIALCI_EVENT"] == "report"
    assert env["TRIVIALCI_EVENT_ID"] == result["id"] and result["id"].endswith("-report.env")
    assert env["TRIVIALCI_EVENT_FILE"] == str(work / f"{result['id']}.json.1@hub")
    assert env["TRIVIALCI_SPOOL"] == str(spool)
    assert env["TRIVIALCI_NODE"] == "hub"
    assert env["TRIVIALCI_NODE_DIR"] == str(spool)
    assert env["TRIVIALCI_ATTEMPT"] == "1"
    assert env["TRIVIALCI_LOG"] == str(work / f"{result['id']}.log")
    assert "TRIVIALCI_KIND" not in env and "TRIVIALCI_WORKER" not in env, "a hub advertises no worker"


def test_a_worker_adds_its_kind_and_name_to_the_environment(spool, pipeline, tmp_path):
    write_script(pipeline, "report.py", REPORTER)
    report = tmp_path / "report.json"
    worker_root = spool / "workers" / "w1"
    drop(worker_root / "inbox", "report.json", json.dumps({"report": str(report)}).encode())

    drained = drain(("worker", "--spool", spool, "--name", "w1", "--kind", "docs"), pipeline)

    assert drained.returncode == 0, drained.stderr
    env = json.loads(report.read_text())["env"]
    assert env["TRIVIALCI_KIND"] == "docs" and env["TRIVIALCI_WORKER"] == "w1"
    assert env["TRIVIALCI_NODE"] == "w1"
    assert env["TRIVIALCI_NODE_DIR"] == str(worker_root)
    assert env["TRIVIALCI_SPOOL"] == str(spool), "the spool is the tree, not the worker's directory"
    assert env["TRIVIALCI_EVENT_FILE"].startswith(str(worker_root / "work") + "/")
    [result] = records(worker_root)
    assert result["node"] == "w1" and result["status"] == "done"
    assert records(spool) == [], "the hub's done/ is not the worker's"


# --- which file is the script -----------------------------------------------------------------

@pytest.mark.parametrize("script_name", ["greet", "greet.sh"])
def test_an_executable_shell_script_named_type_or_type_dot_anything_runs(script_name, spool, pipeline):
    write_script(pipeline, script_name, '#!/bin/sh\necho "shell ran for $TRIVIALCI_EVENT"\n', executable=True)
    drop(spool / "inbox", "greet.json", b"{}")

    assert drain(("hub", "--spool", spool), pipeline).returncode == 0

    [result] = records(spool)
    assert result["status"] == "done" and result["exit_code"] == 0
    assert result["script"] == str(pipeline / script_name)
    assert "shell ran for greet" in log_of(events_in(spool, "done")[0])


def test_a_script_file_that_is_not_executable_is_not_run(spool, pipeline, tmp_path):
    ran = tmp_path / "ran"
    write_script(pipeline, "greet", f'#!/bin/sh\ntouch "{ran}"\n', executable=False)
    drop(spool / "inbox", "greet.json", b"{}")

    assert drain(("hub", "--spool", spool), pipeline).returncode == 0

    [result] = records(spool, "failed")
    assert "no script" in result["reason"] and "greet" in result["reason"], result["reason"]
    assert not ran.exists()


@pytest.mark.parametrize("text", ["#!/nonexistent/interpreter\necho hi\n", "echo no shebang line\n"],
                         ids=["missing_interpreter", "no_shebang"])
def test_a_script_that_cannot_be_executed_fails_with_a_reason(text, spool, pipeline):
    write_script(pipeline, "greet", text, executable=True)
    drop(spool / "inbox", "greet.json", b"{}")
    drop(spool / "inbox", "other.json", b"{}")
    write_script(pipeline, "other", "#!/bin/sh\nexit 0\n", executable=True)

    drained = drain(("hub", "--spool", spool), pipeline)

    assert drained.returncode == 0, drained.stderr
    [result] = records(spool, "failed")
    assert result["event"] == "greet.json"
    assert "cannot run" in result["reason"] and "greet" in result["reason"], result["reason"]
    assert "cannot run" in log_of(events_in(spool, "failed")[0])
    assert [r["event"] for r in records(spool)] == ["other.json"], "the node goes on"
    assert leftovers(spool) == []


def test_a_non_zero_exit_is_recorded_in_failed_with_its_exit_code(spool, pipeline):
    write_script(pipeline, "broken", "#!/bin/sh\necho about to fail\nexit 3\n", executable=True)
    drop(spool / "inbox", "broken.json", b"{}")

    assert drain(("hub", "--spool", spool), pipeline).returncode == 0

    [result] = records(spool, "failed")
    assert result["status"] == "failed" and result["exit_code"] == 3 and result["signal"] is None
    assert "exit status 3" in result["reason"]
    assert "about to fail" in log_of(events_in(spool, "failed")[0])
    assert records(spool, "done") == []


# --- timeouts -----------------------------------------------------------------------------------

def stubborn_script(pids):
    """A script that leaves a grandchild ignoring SIGTERM and a daemon in a session of its own."""
    return f"""#!/bin/sh
pids="{pids}"
sh -c 'trap "" TERM; echo $$ > "$1/ignorer.tmp" && mv "$1/ignorer.tmp" "$1/ignorer.pid"
       while :; do sleep 0.05; done' sh "$pids" &
"{sys.executable}" -c '
import os, sys, time
if os.fork():
    os._exit(0)
os.setsid()
with open(sys.argv[1] + "/daemon.tmp", "w") as handle:
    handle.write(str(os.getpid()))
os.rename(sys.argv[1] + "/daemon.tmp", sys.argv[1] + "/daemon.pid")
time.sleep(300)
' "$pids" </dev/null >/dev/null 2>&1
setsid sleep 300 </dev/null >/dev/null 2>&1 &
echo $! > "$pids/setsid_sleep.pid"
echo $$ > "$pids/script.tmp" && mv "$pids/script.tmp" "$pids/script.pid"
while [ ! -e "$pids/ignorer.pid" ] || [ ! -e "$pids/daemon.pid" ]; do sleep 0.02; done
echo everything started
sleep 300
"""


@pytest.mark.parametrize("how", ["--timeout", "_timeout"])
def test_a_timeout_stops_the_script_its_children_and_its_daemons(how, spool, pipeline, tmp_path):
    pids = tmp_path / "pids"
    pids.mkdir()
    write_script(pipeline, "stubborn", stubborn_script(pids), executable=True)
    payload = b"{}" if how == "--timeout" else b'{"_timeout": 1}'
    drop(spool / "inbox", "stubborn.json", payload)
    flags = ["--timeout", "1"] if how == "--timeout" else ["--timeout", "3600"]
    try:
        drained = drain(("hub", "--spool", spool), pipeline, *flags)

        assert drained.returncode == 0, drained.stderr
        [result] = records(spool, "failed")
        assert "timed out" in result["reason"] and result["timeout"] == 1, result
        log = log_of(events_in(spool, "failed")[0])
        assert "everything started" in log, "the test's processes all ran"
        assert "timed out after 1 s; sending SIGTERM" in log, "the log says why the script stopped"
        started = {p.stem: int(p.read_text()) for p in pids.glob("*.pid")}
        assert started.keys() == {"script", "ignorer", "daemon", "setsid_sleep"}
        try:  # SIGKILL was sent before the record was written; give the kernel a moment to deliver it
            wait_for(lambda: not survivors(started), timeout=1.0)
        except AssertionError:
            assert survivors(started) == {}, "these outlived the timeout"
    finally:
        kill_quietly(pid_files_written_by(pids))


# --- concurrency and what outlives a script ---------------------------------------------------

PAIR = """\
import json, os, sys, time

event = json.load(sys.stdin)
open(event["mine"], "w").close()
deadline = time.monotonic() + event["wait"]
while not os.path.exists(event["other"]):
    if time.monotonic() > deadline:
        sys.exit("the other script did not run at the same time")
    time.sleep(0.01)
"""


@pytest.mark.parametrize("jobs, wait, expected", [(2, 10, ["done", "done"]), (1, 0.5, ["done", "failed"])],
                         ids=["two_jobs_run_together", "one_job_at_a_time"])
def test_jobs_sets_how_many_scripts_run_at_once(jobs, wait, expected, spool, pipeline, tmp_path):
    write_script(pipeline, "pair.py", PAIR)
    a, b = tmp_path / "a", tmp_path / "b"
    drop(spool / "inbox", "pair.a.json", json.dumps({"mine": str(a), "other": str(b), "wait": wait}).encode())
    drop(spool / "inbox", "pair.b.json", json.dumps({"mine": str(b), "other": str(a), "wait": wait}).encode())

    assert drain(("hub", "--spool", spool), pipeline, "--jobs", str(jobs)).returncode == 0

    statuses = [r["status"] for r in records(spool)] + [r["status"] for r in records(spool, "failed")]
    assert sorted(statuses) == expected


def test_a_background_child_of_a_script_that_exits_0_is_left_running(spool, pipeline, tmp_path):
    pid_file = tmp_path / "child.pid"
    write_script(pipeline, "spawn", f'#!/bin/sh\nsleep 300 </dev/null >/dev/null 2>&1 &\necho $! > "{pid_file}"\n'
                 "exit 0\n", executable=True)
    drop(spool / "inbox", "spawn.json", b"{}")
    child = None
    try:
        assert drain(("hub", "--spool", spool), pipeline).returncode == 0
        child = read_pid(pid_file)
        [result] = records(spool)
        assert result["status"] == "done" and result["exit_code"] == 0
        assert pid_alive(child), "a script that ended well may leave a service running: the node leaves it alone"
    finally:
        kill_quietly([child] if child else [])
