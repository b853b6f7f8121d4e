"""Shared test helpers: real spools in temp dirs, real node processes, waiting with deadlines."""

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

try:  # property tests: fixed examples unless asked for more (--hypothesis-profile=long)
    from hypothesis import HealthCheck, settings

    settings.register_profile("ci", max_examples=30, derandomize=True, deadline=None,
                              suppress_health_check=[HealthCheck.too_slow])
    settings.register_profile("long", max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    settings.load_profile("ci")
except ImportError:
    pass
# boto3, looking for credentials that a test left out on purpose, would ask an EC2 instance's metadata
# address: tests talk to 127.0.0.1 only.
os.environ["AWS_EC2_METADATA_DISABLED"] = "true"


def wait_for(condition, timeout=15.0, interval=0.02, message="condition"):
    """Poll `condition` until it returns a truthy value; fail the test at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {message}")
        time.sleep(interval)


def records(node_root: Path, where: str = "done") -> list[dict]:
    """The .result.json files under done/ or failed/ of a node directory, in name order."""
    return [json.loads(p.read_text()) for p in sorted((node_root / where).glob("*/*.result.json"))]


def events_in(node_root: Path, where: str) -> list[Path]:
    return sorted(p for p in (node_root / where).glob("*/*.json") if not p.name.endswith(".result.json"))


def write_script(pipeline: Path, name: str, text: str, executable: bool = False) -> Path:
    pipeline.mkdir(parents=True, exist_ok=True)
    path = pipeline / name
    path.write_text(text)
    if executable:
        path.chmod(0o755)
    return path


# A build runs in a sandbox that sees neither the host's /tmp nor the CI's paths (trivialci/worker/sandbox.py).
# A test holds a build back with a file the build waits for in its own worktree, WORKDIR/jobs/JOB on the worker.
GATE = ".gate"


def gated_build(before: str = "", after: str = "") -> str:
    """A build script that runs `before`, waits for release_build, then runs `after`."""
    return f"#!/bin/sh\n{before}while [ ! -e {GATE} ]; do sleep 0.05; done\n{after}"


def release_build(workdir: Path, job_id: str) -> None:
    """Let the gated build of `job_id` on the worker whose --workdir is `workdir` go on."""
    worktree = Path(workdir) / "jobs" / job_id
    wait_for(worktree.is_dir, timeout=60, message=f"the worktree of {job_id}")
    (worktree / GATE).touch()


class NodeProcess:
    """A real `trivialci hub|worker` process, stopped and reaped by the fixture."""

    def __init__(self, args, env=None, cwd=None):
        self.stderr_path = Path(cwd or ".") / f"node-{os.getpid()}-{id(self)}.stderr"
        self.stderr_file = open(self.stderr_path, "w+")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "trivialci", *map(str, args)],
            stdout=subprocess.DEVNULL, stderr=self.stderr_file, env={**os.environ, **(env or {})}, cwd=cwd,
        )

    def stderr(self) -> str:
        self.stderr_file.flush()
        return self.stderr_path.read_text()

    def stop(self, sig=signal.SIGTERM, timeout=20.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.proc.wait(timeout)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)


@pytest.fixture
def spool(tmp_path) -> Path:
    return tmp_path / "spool"


@pytest.fixture
def pipeline(tmp_path) -> Path:
    directory = tmp_path / "pipeline"
    directory.mkdir()
    return directory


@pytest.fixture
def start_node(tmp_path):
    """start_node("hub", "--spool", S, ...) -> NodeProcess; all are killed at the end of the test."""
    started = []

    def start(*args, env=None):
        node = NodeProcess(args, env=env, cwd=tmp_path)
        started.append(node)
        return node

    yield start
    for node in started:
        node.kill()
        node.stderr_file.close()


def run_cli(*args, input=None, env=None, timeout=60):
    """Run `python -m trivialci ARGS` to completion."""
    return subprocess.run([sys.executable, "-m", "trivialci", *map(str, args)], input=input, capture_output=True,
                          text=True, env={**os.environ, **(env or {})}, timeout=timeout)


@pytest.fixture(params=["fork-server", "spawn"])
def both_launchers(request, monkeypatch):
    """Run a test with TYPE.py scripts forked by the node's fork server (the default), then spawned
    (TRIVIALCI_FORK_SERVER=off): a module opts in with `pytestmark = pytest.mark.usefixtures("both_launchers")`."""
    if request.param == "spawn":
        monkeypatch.setenv("TRIVIALCI_FORK_SERVER", "off")
    return request.param


@pytest.fixture(autouse=True)
def no_leaked_threads():
    """A test that leaves a thread running behind it fails (watchdog's habit, too)."""
    before = set(threading.enumerate())
    yield
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        leaked = [t for t in threading.enumerate() if t not in before and t.is_alive()]
        if not leaked:
            return
        time.sleep(0.02)
    pytest.fail(f"test leaked threads: {leaked}")


def pid_alive(pid: int) -> bool:
    """Whether a process runs (a zombie waiting for a parent that never reaps it counts as gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return fields[0] not in ("Z", "X")


def outcomes(node_root: Path) -> dict[str, list[str]]:
    """Where each handled event ended, by its inbox name: {"x.json": ["done"]}; two places is a bug."""
    ended: dict[str, list[str]] = {}
    for where in ("done", "failed"):
        for result in records(node_root, where):
            ended.setdefault(result["event"], []).append(where)
    return ended


def leftovers(node_root: Path) -> list[str]:
    """What is still in inbox/ or work/ (a settled node has nothing there)."""
    return sorted(f"{where}/{p.name}" for where in ("inbox", "work") for p in (node_root / where).glob("*"))


def _processes_mentioning(text: str) -> list[int]:
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit() and int(name) != os.getpid():
            try:
                with open(f"/proc/{name}/cmdline", "rb") as handle:
                    if text.encode() in handle.read():
                        found.append(int(name))
            except OSError:
                pass
    return found


@pytest.fixture(autouse=True)
def no_leaked_processes(request):
    """A test that leaves a process running on its temp dir (a node, a worker it booted) fails."""
    tmp = str(request.getfixturevalue("tmp_path")) if "tmp_path" in request.fixturenames else None
    yield
    if tmp is None:
        return
    deadline = time.monotonic() + 10
    while (leaked := _processes_mentioning(tmp)) and time.monotonic() < deadline:
        time.sleep(0.05)
    for pid in leaked:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    assert not leaked, f"test left processes running on {tmp}: {leaked}"


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory):
    """One moto S3 server for the session (tests take a fresh bucket in it); skipped without moto or boto3."""
    pytest.importorskip("boto3", reason="boto3 is not installed: pip install -e '.[test]' to test S3 stores")
    pytest.importorskip("moto.server", reason="moto[server] is not installed: pip install -e '.[test]' to test S3 stores")
    from s3server import MotoServer

    server = MotoServer(tmp_path_factory.mktemp("moto") / "moto.log")
    yield server
    server.stop()


@pytest.fixture
def s3_env(s3_server, monkeypatch) -> dict[str, str]:
    """This process and its children reach the test S3 server (and no other credentials or profile)."""
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(name, raising=False)
    for name, value in s3_server.env().items():
        monkeypatch.setenv(name, value)
    return s3_server.env()
