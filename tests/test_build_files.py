"""What a build leaves behind is hostile when it is uploaded: links, swapped files, a log made a link.

Each test runs one real job (JobRun: a real git repository, a real build
process, a real directory store) whose build tries to make the worker store
or overwrite a file outside what it was given. A job's retry lists only its
own files.

The builds here run without the sandbox (--sandbox off): what they try is what
an unsandboxed build could do to the worker's own disk, and the worker's steps
must hold even then. With the sandbox on they could not reach the workdir at
all (tests/test_sandbox.py).
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import pid_alive, wait_for
from test_flow import Origin

from trivialci.spool.layout import hub_dir
from trivialci.worker import jobrun

SECRET = b"-----BEGIN OPENSSH PRIVATE KEY----- not for the store"
JOB = "20261125T000000Z-abcdef"


@pytest.fixture(autouse=True)
def no_sandbox(monkeypatch):
    monkeypatch.setenv("TRIVIALCI_SANDBOX", "off")


@pytest.fixture
def home(tmp_path) -> Path:
    """The worker user's home, with a key: what the build's links point to."""
    ssh = tmp_path / "home" / ".ssh"
    ssh.mkdir(parents=True)
    (ssh / "id_ed25519").write_bytes(SECRET)
    (tmp_path / "home" / ".profile").write_text("export PATH\n")
    return tmp_path / "home"


def job_of(tmp_path: Path, build: str, attempt: int = 1) -> dict:
    """Commit `build` as .trivialci/build: JobRun's arguments for it as job JOB on worker w1."""
    origin = Origin(tmp_path)
    sha = origin.commit("main", {"build": build})
    spool = tmp_path / "spool"
    hub_dir(spool).create()
    package = {"job": JOB, "repo": str(origin.bare), "branch": "main", "sha": sha, "kind": "build",
               "attempt": attempt}
    return {"package": package, "worker": "w1", "workdir": str(tmp_path / "ciwork" / "w1"), "spool": str(spool),
            "store_url": f"file://{tmp_path / 'store'}"}


def run_job(tmp_path: Path, build: str, attempt: int = 1) -> dict:
    """Run the job in this process; its record."""
    return jobrun.JobRun(**job_of(tmp_path, build, attempt)).run()


RUNNER = "import json, sys\nfrom trivialci.worker import jobrun\nprint(json.dumps(jobrun.JobRun(**json.loads(sys.argv[1])).run()))"


def run_job_in_a_process(tmp_path: Path, build: str, timeout: float = 120) -> dict:
    """Run the job in a process of its own, given `timeout` seconds (a worker that hangs fails the test)."""
    done = subprocess.run([sys.executable, "-c", RUNNER, json.dumps(job_of(tmp_path, build))], capture_output=True,
                          text=True, timeout=timeout)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1])


def stored(tmp_path: Path) -> dict[str, bytes]:
    root = tmp_path / "store"
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*")
            if p.is_file() and not p.is_symlink() and ".tmp" not in p.parts}


WORKDIR = 'workdir="$(dirname "$(dirname "$TRIVIALCI_ARTIFACTS")")"\n'


def test_an_artifacts_directory_replaced_by_a_link_stores_nothing_of_its_target(tmp_path, home):
    build = f'#!/bin/sh\nrm -rf "$TRIVIALCI_ARTIFACTS"\nln -s "{home}/.ssh" "$TRIVIALCI_ARTIFACTS"\n'
    record = run_job(tmp_path, build)
    assert record["status"] == "PASSED" and record["files"] == []
    assert "artifacts directory" in record["reason"] and "link" in record["reason"]
    assert not any(SECRET in value for value in stored(tmp_path).values())
    assert sorted(stored(tmp_path)) == [f"jobs/{JOB}/job.json", f"jobs/{JOB}/log.txt"]
    assert (home / ".ssh" / "id_ed25519").read_bytes() == SECRET, "the clean-up did not follow the link either"


def test_a_log_replaced_by_a_link_stores_what_the_worker_wrote_and_writes_through_no_link(tmp_path, home):
    shadow = home / "shadow"
    shadow.write_bytes(b"root:$6$secret-hash:19000:0:99999:7:::\n")
    build = ('#!/bin/sh\necho "before the swap"\n' + WORKDIR +
             f'log="$workdir/logs/$TRIVIALCI_JOB.log"\nrm -f "$log"\nln -s "{shadow}" "$log"\n'
             f'ln -s "{home}/.profile" "$workdir/logs/$TRIVIALCI_JOB.ended"\necho "after the swap"\n')
    record = run_job(tmp_path, build)
    assert record["status"] == "PASSED", record
    log = stored(tmp_path)[f"jobs/{JOB}/log.txt"]
    assert b"before the swap" in log and b"after the swap" in log and b"secret-hash" not in log
    assert shadow.read_bytes() == b"root:$6$secret-hash:19000:0:99999:7:::\n", "nothing was appended to the link"
    assert (home / ".profile").read_text() == "export PATH\n", "the end marker did not overwrite the link's target"
    logs = tmp_path / "ciwork" / "w1" / "logs"
    assert (logs / f"{JOB}.ended").is_file() and not (logs / f"{JOB}.ended").is_symlink()


SWAPPER = Path(__file__).with_name("link_swapper.py")


def test_a_build_that_keeps_swapping_files_for_links_during_the_upload_never_stores_their_targets(tmp_path, home):
    stop = tmp_path / "stop"
    (tmp_path / "swapper.py").write_text(SWAPPER.read_text())
    build = (f'#!/bin/sh\n"$TRIVIALCI_PYTHON" "{tmp_path}/swapper.py" "$TRIVIALCI_ARTIFACTS" '
             f'"$TRIVIALCI_ARTIFACTS.staging" "{home}/.ssh/id_ed25519" "{stop}" 60 no </dev/null >/dev/null 2>&1 &\n'
             f'echo $! > "{stop}.pid"\n'
             'while [ ! -e "$TRIVIALCI_ARTIFACTS.staging/started" ]; do sleep 0.01; done\necho "left a swapper behind"\n')
    try:
        record = run_job(tmp_path, build)
        assert pid_alive(int(Path(f"{stop}.pid").read_text())), "the swapper ran through the upload"
    finally:
        stop.touch()
        pid = int(Path(f"{stop}.pid").read_text()) if Path(f"{stop}.pid").exists() else None
        if pid:
            wait_for(lambda: not pid_alive(pid), timeout=30, message="the swapper to stop")
    values = stored(tmp_path)
    assert record["status"] == "PASSED", record
    assert not any(SECRET in value for value in values.values()), "a link's target was stored"
    assert all(values[f"jobs/{JOB}/files/{name}"] == b"artifact" for name in record["files"])
    assert sorted(record["files"]) == sorted(key.split("/files/")[1] for key in values if "/files/" in key)


def test_a_retry_lists_only_its_own_files(tmp_path):
    store = tmp_path / "store"
    dead = store / "jobs" / JOB
    (dead / "files" / "reports").mkdir(parents=True)
    (dead / "files" / "reports" / "from-attempt-1.txt").write_text("the dead attempt's")
    (dead / "files" / "out.txt").write_text("the dead attempt's")
    (dead / "job.json").write_text(json.dumps({"job": JOB, "attempt": 1, "status": "PASSED",
                                               "files": ["out.txt", "reports/from-attempt-1.txt"]}))
    record = run_job(tmp_path, '#!/bin/sh\necho mine > "$TRIVIALCI_ARTIFACTS/out.txt"\n', attempt=2)
    assert record["status"] == "PASSED" and record["files"] == ["out.txt"]
    files = sorted(key for key in stored(tmp_path) if "/files/" in key)
    assert files == [f"jobs/{JOB}/files/out.txt"]
    assert (dead / "files" / "out.txt").read_text() == "mine\n"
    assert json.loads((dead / "job.json").read_text())["attempt"] == 2


def test_the_log_of_an_earlier_attempt_goes_on_in_the_same_file(tmp_path):
    logs = tmp_path / "ciwork" / "w1" / "logs"
    logs.mkdir(parents=True)
    (logs / f"{JOB}.log").write_bytes(b"attempt 1 was here\n")
    (logs / f"{JOB}.ended").write_text("then\n")
    run_job(tmp_path, '#!/bin/sh\necho "attempt 2 builds"\n', attempt=2)
    log = stored(tmp_path)[f"jobs/{JOB}/log.txt"]
    assert log.startswith(b"attempt 1 was here\n") and b"attempt 2 builds" in log


def test_a_logs_directory_replaced_by_a_link_is_replaced_not_followed(tmp_path, home):
    workdir = tmp_path / "ciwork" / "w1"
    workdir.mkdir(parents=True)
    (workdir / "logs").symlink_to(home, target_is_directory=True)
    record = run_job(tmp_path, '#!/bin/sh\necho "built"\n')
    assert record["status"] == "PASSED"
    assert b"built" in stored(tmp_path)[f"jobs/{JOB}/log.txt"]
    assert (workdir / "logs").is_dir() and not (workdir / "logs").is_symlink()
    assert sorted(os.listdir(home)) == [".profile", ".ssh"], "nothing was written into the link's target"


def test_a_fifo_put_where_the_log_goes_is_replaced_not_waited_on(tmp_path):
    logs = tmp_path / "ciwork" / "w1" / "logs"
    logs.mkdir(parents=True)
    os.mkfifo(logs / f"{JOB}.log")
    os.mkfifo(logs / f"{JOB}.ended")
    record = run_job_in_a_process(tmp_path, '#!/bin/sh\necho "built"\n', timeout=60)
    assert record["status"] == "PASSED"
    assert b"built" in stored(tmp_path)[f"jobs/{JOB}/log.txt"]
