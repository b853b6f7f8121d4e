"""The fork server: a TYPE.py script it forks gets what a spawned one gets, and every guarantee holds.

Real hubs on temp spools, one with the fork server (the default) and one with
TRIVIALCI_FORK_SERVER=off, running the same probe scripts; real kill -9 of the
server; real process groups and setsid daemons.
"""

import json
import os
import re
import signal
import time
from pathlib import Path

import pytest

from conftest import ROOT, events_in, pid_alive, records, wait_for, write_script

PROBE = r'''
import base64, json, os, random, signal, sys
def stream(s):
    return [s.encoding, s.errors, s.line_buffering, s.write_through, s.name, s.mode, type(s.buffer).__name__]
marks = [e.decode() for e in open(f"/proc/{os.getpid()}/environ", "rb").read().split(b"\0")
         if e.startswith((b"TRIVIALCI_EVENT_ID=", b"TRIVIALCI_NODE_DIR="))]
report = {
    "argv": sys.argv, "orig_argv": sys.orig_argv, "argument": json.loads(base64.b64decode(sys.argv[1])),
    "stdin": sys.stdin.read(), "env": dict(os.environ), "cwd": os.getcwd(),
    "group_leader": os.getpgid(0) == os.getpid(), "session_leader": os.getsid(0) == os.getpid(),
    "parent": os.getppid(),
    "path0": sys.path[0], "path": sys.path[1:], "fds": sorted(os.listdir("/proc/self/fd")),
    "handlers": {s.name: str(signal.getsignal(s)) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGPIPE,
                                                         signal.SIGXFSZ, signal.SIGCHLD, signal.SIGHUP)},
    "blocked": sorted(signal.pthread_sigmask(signal.SIG_BLOCK, [])),
    "name": __name__, "file": __file__, "doc": __doc__, "loader": type(__loader__).__name__, "spec": __spec__,
    "streams": [stream(sys.stdin), stream(sys.stdout), stream(sys.stderr)], "flags": str(sys.flags),
    "marks": sorted(marks), "cmdline": open(f"/proc/{os.getpid()}/cmdline", "rb").read().decode().split("\0"),
    "umask": os.umask(0o22), "random": random.random(), "hash_of_main": "__main__" in sys.modules,
    "forked": b"TRIVIALCI_EVENT=" not in open(f"/proc/{os.getpid()}/environ", "rb").read(),
}
print(json.dumps(report))
print("to stderr", file=sys.stderr)
'''
BOOM = "import sys\nprint('before')\ndef fail():\n    raise ValueError('boom')\nfail()\n"
EVENT_SPECIFIC = ("TRIVIALCI_EVENT_ID", "TRIVIALCI_EVENT_FILE", "TRIVIALCI_LOG")


class Hub:
    """A real hub process; `forking` tells whether it has a fork server."""

    def __init__(self, start_node, spool: Path, pipeline: Path, forking: bool, *options, env=None):
        self.spool = spool
        options = options if forking else ("--no-fork-server", *options)
        self.node = start_node("hub", "--spool", spool, "--pipeline", pipeline, *options, env=env)
        wait_for(lambda: (spool / "hub.json").exists(), message="the hub's heartbeat")

    def send(self, event_type: str, payload: dict | None = None, name: str | None = None) -> str:
        name = name or f"{event_type}.{time.monotonic_ns()}.json"
        staged = self.spool / "tmp" / name
        staged.write_text(json.dumps(payload or {}))
        os.rename(staged, self.spool / "inbox" / name)
        return name

    def result(self, name: str, where: str = "done", timeout: float = 20.0) -> dict:
        def found():
            return next((r for r in records(self.spool, where) if r["event"] == name), None)
        return wait_for(found, timeout=timeout, message=f"{name} in {where}/ ({self.node.stderr()[-2000:]})")

    def log_of(self, name: str, where: str = "done") -> str:
        result = self.result(name, where)
        return next(self.spool.glob(f"{where}/*/{result['log']}")).read_text()

    def server_pids(self) -> list[int]:
        return [int(p) for p in re.findall(r"fork server pid (\d+) ready", self.node.stderr())]


def _probe(hub: Hub, payload: dict) -> dict:
    name = hub.send("probe", payload)
    assert hub.result(name)["exit_code"] == 0
    lines = hub.log_of(name).splitlines()
    assert lines[1:] == ["to stderr"], lines
    return json.loads(lines[0])


def _comparable(report: dict) -> dict:
    report = json.loads(json.dumps(report))
    for key in EVENT_SPECIFIC:
        report["env"].pop(key, None)
    report["marks"] = [m.split("=", 1)[0] for m in report["marks"]]
    report["cmdline"] = report["cmdline"][:2]
    for key in ("random", "forked", "parent"):
        report.pop(key)
    return report


@pytest.fixture
def probe_pipeline(pipeline):
    write_script(pipeline, "probe.py", f'"""The probe."""\n{PROBE}')
    write_script(pipeline, "boom.py", BOOM)
    return pipeline


def test_a_forked_script_gets_what_a_spawned_one_gets(start_node, tmp_path, probe_pipeline):
    forked_hub = Hub(start_node, tmp_path / "forked", probe_pipeline, True)
    spawned_hub = Hub(start_node, tmp_path / "spawned", probe_pipeline, False)
    payload = {"x": [1, "\u00e9"], "pid": "ignored"}
    forked, again = _probe(forked_hub, payload), _probe(forked_hub, payload)
    spawned = _probe(spawned_hub, payload)

    assert forked["forked"] and again["forked"] and not spawned["forked"]
    assert forked["argument"] == payload and json.loads(forked["stdin"]) == payload
    assert forked["group_leader"] and forked["session_leader"]
    assert forked["parent"] == forked_hub.node.proc.pid and spawned["parent"] == spawned_hub.node.proc.pid
    assert forked["fds"] == ["0", "1", "2", "3"]  # 3: the listing's own
    assert forked["marks"] == [f"TRIVIALCI_EVENT_ID={forked['env']['TRIVIALCI_EVENT_ID']}",
                               f"TRIVIALCI_NODE_DIR={tmp_path / 'forked'}"]
    assert forked["cmdline"][1] == str(probe_pipeline / "probe.py")
    assert forked["random"] != again["random"], "each child has fresh random state"
    assert _comparable(forked)["env"] == {**_comparable(spawned)["env"], "TRIVIALCI_SPOOL": str(tmp_path / "forked"),
                                          "TRIVIALCI_NODE_DIR": str(tmp_path / "forked"),
                                          "TRIVIALCI_ATTEMPT": "1"}
    unlike_spool = {"env", "cwd", "marks"}
    assert {k: v for k, v in _comparable(forked).items() if k not in unlike_spool} == \
           {k: v for k, v in _comparable(spawned).items() if k not in unlike_spool}


def test_a_forked_scripts_traceback_and_status_are_a_spawned_ones(start_node, tmp_path, probe_pipeline):
    forked_hub = Hub(start_node, tmp_path / "forked", probe_pipeline, True)
    spawned_hub = Hub(start_node, tmp_path / "spawned", probe_pipeline, False)
    logs, results = [], []
    for hub in (forked_hub, spawned_hub):
        name = hub.send("boom")
        results.append(hub.result(name, "failed"))
        logs.append(hub.log_of(name, "failed"))
    assert logs[0] == logs[1] and "ValueError: boom" in logs[0] and logs[0].startswith("before\n")
    assert results[0]["exit_code"] == results[1]["exit_code"] == 1
    assert forked_hub.server_pids() and not spawned_hub.server_pids()


def test_exit_statuses_and_signals_are_recorded_as_for_a_spawned_script(start_node, tmp_path, pipeline):
    write_script(pipeline, "ends.py", "import json, os, signal, sys\nhow = json.load(sys.stdin)\n"
                                      "os.kill(os.getpid(), how['signal']) if 'signal' in how else sys.exit(how['exit'])\n")
    hub = Hub(start_node, tmp_path / "spool", pipeline, True)
    cases = [({"exit": 0}, 0, None), ({"exit": 3}, 3, None), ({"exit": "words"}, 1, None),
             ({"signal": signal.SIGKILL}, None, signal.SIGKILL), ({"signal": signal.SIGINT}, None, signal.SIGINT)]
    for payload, exit_code, sig in cases:
        name = hub.send("ends", payload)
        result = hub.result(name, "done" if exit_code == 0 else "failed")
        assert (result["exit_code"], result["signal"]) == (exit_code, sig), (payload, result)
    assert len(hub.server_pids()) == 1


def test_a_timeout_kills_a_forked_scripts_grandchildren_and_setsid_daemons(start_node, tmp_path, pipeline):
    pids = tmp_path / "pids"
    write_script(pipeline, "hang.py", f"""
import os, subprocess, sys, time
child = subprocess.Popen(["sleep", "300"])
daemon = subprocess.Popen(["sleep", "301"], start_new_session=True)
with open({str(pids)!r}, "w") as f:
    f.write(f"{{os.getpid()}} {{child.pid}} {{daemon.pid}}\\n")
time.sleep(300)
""")
    hub = Hub(start_node, tmp_path / "spool", pipeline, True, "--grace", "1")
    name = hub.send("hang", {"_timeout": 1})
    result = hub.result(name, "failed")
    assert "timed out" in result["reason"]
    script, child, daemon = map(int, pids.read_text().split())
    assert hub.server_pids() and not any(map(pid_alive, (script, child, daemon)))


def test_kill_9_of_the_fork_server_mid_script_ends_the_event_once(start_node, tmp_path, pipeline):
    go, started = tmp_path / "go", tmp_path / "started"
    write_script(pipeline, "wait.py", f"""
import os, pathlib, time
pathlib.Path({str(started)!r}).write_text(os.environ["TRIVIALCI_ATTEMPT"])
while not os.path.exists({str(go)!r}):
    time.sleep(0.02)
""")
    write_script(pipeline, "probe.py", PROBE)
    hub = Hub(start_node, tmp_path / "spool", pipeline, True)
    name = hub.send("wait")
    wait_for(started.exists, message="the script to start")
    [server] = hub.server_pids()
    os.kill(server, signal.SIGKILL)
    go.touch()
    result = hub.result(name)
    assert (result["attempt"], result["exit_code"]) == (1, 0) and started.read_text() == "1"
    assert [e.name for e in events_in(tmp_path / "spool", "done")].count(Path(result["log"]).stem + ".json") == 1
    wait_for(lambda: _probe(hub, {})["forked"], message="a script forked by a new server")  # spawned until then
    assert len(hub.server_pids()) == 2
    assert "fork server (pid %d) exited with status -9" % server in hub.node.stderr()
    assert not records(tmp_path / "spool", "failed")


def test_a_script_that_monkeypatches_trivialci_does_not_affect_the_next(start_node, tmp_path, pipeline):
    write_script(pipeline, "patch.py", "import json, trivialci\ntrivialci.emit = None\ntrivialci.planted = 1\n"
                                       "json.dumps = None\nimport os\nos.environ['PLANTED'] = '1'\n")
    write_script(pipeline, "check.py", "import json, os, trivialci\n"
                                       "print(callable(trivialci.emit), hasattr(trivialci, 'planted'),\n"
                                       "      json.dumps([1]), 'PLANTED' in os.environ)\n")
    hub = Hub(start_node, tmp_path / "spool", pipeline, True)
    hub.result(hub.send("patch"))
    assert hub.log_of(hub.send("check")) == "True False [1] False\n"
    assert len(hub.server_pids()) == 1


def test_a_pipeline_helper_edited_between_two_events_is_seen_fresh(start_node, tmp_path, pipeline):
    helper = write_script(pipeline, "helper.py", "VALUE = 1\n")
    write_script(pipeline, "use.py", "import helper, sys\nprint(helper.VALUE, sys.modules['helper'].__file__)\n")
    hub = Hub(start_node, tmp_path / "spool", pipeline, True)
    assert hub.log_of(hub.send("use")) == f"1 {helper}\n"
    helper.write_text("VALUE = 2\n")
    os.utime(helper, (time.time() + 5, time.time() + 5))  # a new mtime even on a coarse clock
    assert hub.log_of(hub.send("use")) == f"2 {helper}\n"
    assert len(hub.server_pids()) == 1


def test_a_pipeline_module_that_shadows_a_preloaded_one_makes_its_scripts_spawned(start_node, tmp_path,
                                                                                  probe_pipeline):
    write_script(probe_pipeline, "json.py", "from importlib import import_module\nLOCAL = True\n")
    write_script(probe_pipeline, "uses_json.py", "import json\nprint(getattr(json, 'LOCAL', False))\n")
    write_script(probe_pipeline, "imports.py", "import trivialci.hub, json\n")
    hub = Hub(start_node, tmp_path / "spool", probe_pipeline, True)
    assert hub.log_of(hub.send("uses_json")) == "True\n"
    assert "shadows a module the fork server imported" in hub.node.stderr()


def test_executable_scripts_are_spawned(start_node, tmp_path, pipeline):
    write_script(pipeline, "shell", "#!/bin/sh\ntr '\\0' '\\n' < /proc/$$/environ | grep -c '^TRIVIALCI_EVENT='\n",
                 executable=True)
    hub = Hub(start_node, tmp_path / "spool", pipeline, True)
    assert hub.log_of(hub.send("shell")) == "1\n"


def test_a_new_pipeline_revision_restarts_the_server(start_node, tmp_path):
    first, second = tmp_path / "rev1", tmp_path / "rev2"
    for directory, value in ((first, 1), (second, 2)):
        write_script(directory, "which.py", f"print({value})\n")
    current = tmp_path / "current"
    current.symlink_to(first)
    hub = Hub(start_node, tmp_path / "spool", current, True)
    assert hub.log_of(hub.send("which")) == "1\n"
    staged = tmp_path / "current.new"
    staged.symlink_to(second)
    os.replace(staged, current)
    assert hub.log_of(hub.send("which")) == "2\n"
    wait_for(lambda: hub.log_of(hub.send("which")) == "2\n" and len(hub.server_pids()) == 2,
             message="a script forked by the second server")
    assert "restarting the fork server: the pipeline is now" in hub.node.stderr()


def test_changed_trivialci_files_restart_the_server(start_node, tmp_path, pipeline):
    write_script(pipeline, "noop.py", "import trivialci\n")
    hub = Hub(start_node, tmp_path / "spool", pipeline, True)
    hub.result(hub.send("noop"))
    touched = ROOT / "trivialci" / "errors.py"
    info = touched.stat()
    try:
        os.utime(touched, ns=(info.st_atime_ns, info.st_mtime_ns + 1_000_000_000))
        wait_for(lambda: hub.result(hub.send("noop")) and "TrivialCi's files changed on disk" in hub.node.stderr(),
                 message="the server to notice (within a second)")
    finally:
        os.utime(touched, ns=(info.st_atime_ns, info.st_mtime_ns))
    wait_for(lambda: hub.result(hub.send("noop")) and len(hub.server_pids()) == 2,
             message="a script forked by the second server")


def test_no_fork_server_flag_and_variable_turn_it_off(start_node, tmp_path, probe_pipeline):
    hub = Hub(start_node, tmp_path / "flag", probe_pipeline, False)
    assert _probe(hub, {})["forked"] is False
    off = Hub(start_node, tmp_path / "env", probe_pipeline, True, env={"TRIVIALCI_FORK_SERVER": "off"})
    assert _probe(off, {})["forked"] is False
    assert "fork server" not in hub.node.stderr() + off.node.stderr()


def test_kill_9_of_the_node_stops_its_forked_script_and_daemon_at_restart(start_node, tmp_path, pipeline):
    pids = tmp_path / "pids"
    write_script(pipeline, "stay.py", f"""
import os, subprocess, time
if os.environ["TRIVIALCI_ATTEMPT"] == "1":
    daemon = subprocess.Popen(["sleep", "302"], start_new_session=True)
    with open({str(pids)!r} + ".tmp", "w") as f:
        f.write(f"{{os.getpid()}} {{daemon.pid}}")
    os.rename({str(pids)!r} + ".tmp", {str(pids)!r})
    time.sleep(300)
""")
    spool = tmp_path / "spool"
    hub = Hub(start_node, spool, pipeline, True, "--grace", "0.5")
    name = hub.send("stay")
    script, daemon = map(int, wait_for(lambda: pids.exists() and pids.read_text(), message="the pids").split())
    [server] = hub.server_pids()
    hub.node.kill()
    wait_for(lambda: not pid_alive(server), message="the fork server to exit with its node")
    assert pid_alive(script) and pid_alive(daemon), "a SIGKILLed node leaves its script running"

    restarted = Hub(start_node, spool, pipeline, True, "--grace", "0.5")
    result = restarted.result(name)
    assert result["attempt"] == 2 and not pid_alive(script) and not pid_alive(daemon)


def test_a_script_that_links_out_of_the_pipeline_is_spawned_and_the_server_stays(start_node, tmp_path, pipeline):
    elsewhere = write_script(tmp_path / "elsewhere", "linked.py", "import sys\nprint(sys.path[0])\n")
    (pipeline / "linked.py").symlink_to(elsewhere)
    write_script(pipeline, "probe.py", PROBE)
    hub = Hub(start_node, tmp_path / "spool", pipeline, True)
    for _ in range(2):
        assert hub.log_of(hub.send("linked")) == f"{tmp_path / 'elsewhere'}\n"
    assert _probe(hub, {})["forked"] and len(hub.server_pids()) == 1
    assert "spawns linked.py as usual: it is a link" in hub.node.stderr()
