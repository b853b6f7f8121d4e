"""The example flow end to end: a push becomes a PASSED or FAILED job in the artifact store.

Real git repositories (a bare origin and a clone), a real hub with the shipped
pipeline, workers it boots itself, a real directory store.
"""

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
from conftest import _processes_mentioning, gated_build, release_build, run_cli, wait_for

from trivialci.git.commands import repo_key
from trivialci.up import local_worker_pids

BUILD_OK = "#!/bin/sh\necho \"building $TRIVIALCI_BRANCH at $TRIVIALCI_SHA\"\necho made > \"$TRIVIALCI_ARTIFACTS/out.txt\"\n"
BUILD_FAILS = "#!/bin/sh\necho 'compiling...'\necho 'error: it does not build' >&2\nexit 3\n"


def git(*args, cwd=None):
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


class Origin:
    """A bare origin and a working clone that pushes to it."""

    def __init__(self, root: Path):
        self.bare, self.work = root / "origin.git", root / "work"
        git("init", "-q", "--bare", "-b", "main", str(self.bare))
        git("init", "-q", "-b", "main", str(self.work))
        git("config", "user.email", "ci@example.invalid", cwd=self.work)
        git("config", "user.name", "ci", cwd=self.work)
        git("remote", "add", "origin", str(self.bare), cwd=self.work)

    def commit(self, branch: str, scripts: dict[str, str], message="change") -> str:
        git("checkout", "-q", "-B", branch, cwd=self.work)
        for name, text in scripts.items():
            path = self.work / ".trivialci" / name
            path.parent.mkdir(exist_ok=True)
            path.write_text(text)
            path.chmod(0o755)
        git("add", "-A", cwd=self.work)
        git("commit", "-q", "--allow-empty", "-m", message, cwd=self.work)
        git("push", "-q", "-f", "origin", branch, cwd=self.work)
        return git("rev-parse", "HEAD", cwd=self.work)


@pytest.fixture
def origin(tmp_path):
    return Origin(tmp_path)


@pytest.fixture
def ci(tmp_path, start_node):
    """A hub on the shipped pipeline with a directory store; it boots its own workers."""
    spool, store = tmp_path / "spool", tmp_path / "store"
    hub = start_node("hub", "--spool", spool, "--store", f"file://{store}", "--workdir", tmp_path / "ciwork" / "hub",
                     "--tick", "0.3", "--grace", "1")
    yield {"spool": spool, "store": store, "hub": hub}
    hub.stop()
    for pid in local_worker_pids(spool):
        os.kill(pid, signal.SIGTERM)
    wait_for(lambda: not local_worker_pids(spool), timeout=30, message="the booted workers to stop")


def store_jobs(store: Path) -> dict[str, dict]:
    return {p.parent.name: json.loads(p.read_text()) for p in store.glob("jobs/*/job.json")}


def push_event(spool, origin, branch, sha, old=None):
    return run_cli("emit", "branch_update", json.dumps({"repo": str(origin.bare), "branch": branch, "old": old,
                                                         "new": sha}), "--spool", spool)


def test_a_push_becomes_passed_in_the_store_with_log_and_files(ci, origin):
    sha = origin.commit("main", {"build": BUILD_OK})
    assert push_event(ci["spool"], origin, "main", sha).returncode == 0

    [(job_id, job)] = wait_for(lambda: store_jobs(ci["store"]), timeout=60, message="the job record").items()
    assert job["status"] == "PASSED" and job["sha"] == sha and job["branch"] == "main" and job["kind"] == "build"
    assert job["files"] == ["out.txt"] and job["exit_code"] == 0 and job["attempt"] == 1
    assert job["queue_wait"] is not None and job["run_time"] is not None
    log = (ci["store"] / "jobs" / job_id / "log.txt").read_text()
    assert f"building main at {sha}" in log
    assert (ci["store"] / "jobs" / job_id / "files" / "out.txt").read_text() == "made\n"

    history = run_cli("history", "list", "--store", f"file://{ci['store']}")
    assert job_id in history.stdout and "PASSED" in history.stdout


def test_a_failing_build_is_failed_with_its_log(ci, origin):
    sha = origin.commit("feature/x", {"build": BUILD_FAILS})
    push_event(ci["spool"], origin, "feature/x", sha)
    [(job_id, job)] = wait_for(lambda: store_jobs(ci["store"]), timeout=60, message="the job record").items()
    assert job["status"] == "FAILED" and job["exit_code"] == 3 and job["reason"] == "exit status 3"
    assert "error: it does not build" in (ci["store"] / "jobs" / job_id / "log.txt").read_text()
    shown = run_cli("history", "log", job_id, "--store", f"file://{ci['store']}")
    assert "compiling..." in shown.stdout


def test_tmp_branches_are_not_built(ci, origin):
    sha = origin.commit("tmp/experiment", {"build": BUILD_OK})
    push_event(ci["spool"], origin, "tmp/experiment", sha)
    log = wait_for(lambda: [p.read_text() for p in (ci["spool"] / "done").glob("*/*-branch_update.*.log")],
                   message="the branch_update to be handled")
    assert "skipped" in log[0]
    assert store_jobs(ci["store"]) == {} and not list((ci["spool"] / "state" / "jobs").glob("*.json"))


def test_two_kinds_go_to_two_workers(ci, origin):
    sha = origin.commit("main", {"build": BUILD_OK, "integration": BUILD_OK})
    push_event(ci["spool"], origin, "main", sha)
    jobs = wait_for(lambda: len(store_jobs(ci["store"])) == 2 and store_jobs(ci["store"]), timeout=60,
                    message="two job records")
    assert sorted((j["kind"], j["status"], j["worker"]) for j in jobs.values()) == [
        ("build", "PASSED", "build-1"), ("integration", "PASSED", "integration-1")]


def slow_build() -> str:
    return gated_build(after="echo released\n")


def worker_disk(tmp_path: Path, job: dict) -> Path:
    """The --workdir of the worker the hub booted for `job` (beside the hub's, as boot_worker makes it)."""
    return tmp_path / "ciwork" / job["worker"]


def hub_jobs(spool: Path) -> dict[str, dict]:
    return {p.stem: json.loads(p.read_text()) for p in (spool / "state" / "jobs").glob("*.json")}


def building(spool: Path):
    return [j for j in hub_jobs(spool).values() if j["status"] == "BUILDING"]


def test_a_newer_push_supersedes_the_running_job_of_its_branch(ci, origin, tmp_path):
    first = origin.commit("feature/y", {"build": slow_build()})
    push_event(ci["spool"], origin, "feature/y", first)
    [running] = wait_for(lambda: building(ci["spool"]), timeout=60, message="the first job to build")
    second = origin.commit("feature/y", {"build": BUILD_OK})
    push_event(ci["spool"], origin, "feature/y", second, old=first)

    jobs = wait_for(lambda: len(store_jobs(ci["store"])) == 2 and store_jobs(ci["store"]), timeout=60,
                    message="both records")
    assert jobs[running["job"]]["status"] == "SUPERSEDED" and jobs[running["job"]]["sha"] == first
    [newer] = [j for j in jobs.values() if j["sha"] == second]
    assert newer["status"] == "PASSED"
    assert "released" not in (ci["store"] / "jobs" / running["job"] / "log.txt").read_text(), "stopped, not released"


def test_cancel_stops_a_running_job(ci, origin, tmp_path):
    origin_sha = origin.commit("main", {"build": slow_build()})
    push_event(ci["spool"], origin, "main", origin_sha)
    [running] = wait_for(lambda: building(ci["spool"]), timeout=60, message="the job to build")
    cancelled = run_cli("cancel", running["job"], "--spool", ci["spool"])
    assert cancelled.returncode == 0, cancelled.stderr
    jobs = wait_for(lambda: store_jobs(ci["store"]), timeout=60, message="the record")
    assert jobs[running["job"]]["status"] == "CANCELLED"
    script = str(worker_disk(tmp_path, running) / "jobs" / running["job"] / ".trivialci" / "build")
    assert not _processes_mentioning(script), "the build (its shell, its sandbox) is gone once it is recorded"


def test_build_wait_exits_with_the_jobs_result(ci, origin):
    origin.commit("good", {"build": BUILD_OK})
    origin.commit("bad", {"build": BUILD_FAILS})
    passed = run_cli("build", "--repo", origin.bare, "--branch", "good", "--wait", "--timeout", "60",
                     "--spool", ci["spool"], timeout=90)
    assert passed.returncode == 0, passed.stdout + passed.stderr
    assert "PASSED" in passed.stdout
    failed = run_cli("build", "--repo", origin.bare, "--branch", "bad", "--wait", "--timeout", "60",
                     "--spool", ci["spool"], timeout=90)
    assert failed.returncode == 1 and "FAILED" in failed.stdout
    missing = run_cli("build", "--repo", origin.bare, "--branch", "nope", "--spool", ci["spool"])
    assert missing.returncode == 2 and "has no branch 'nope'" in missing.stderr


HOSTILE_BRANCHES = ["--upload-pack=touch /tmp/trivialci-pwned", "-h", "$(touch trivialci-pwned)", "a..b",
                    "bad\x01name", "feat/\nx"]


@pytest.mark.parametrize("branch", HOSTILE_BRANCHES)
def test_hostile_branch_names_are_refused_and_nothing_runs(ci, origin, branch, tmp_path):
    sha = origin.commit("main", {"build": BUILD_OK})
    payload = {"repo": str(origin.bare), "branch": branch, "old": None, "new": sha}
    (ci["spool"] / "inbox").mkdir(parents=True, exist_ok=True)
    run_cli("emit", "branch_update", json.dumps(payload), "--spool", ci["spool"])
    [log] = wait_for(lambda: list((ci["spool"] / "failed").glob("*/*-branch_update.*.log")), message="the refusal")
    assert "refused" in log.read_text() and "branch" in log.read_text()
    assert not Path("/tmp/trivialci-pwned").exists() and not (tmp_path / "trivialci-pwned").exists()
    assert store_jobs(ci["store"]) == {}


def test_an_ext_transport_repo_is_refused(ci, tmp_path):
    marker = tmp_path / "pwned"
    payload = {"repo": f"ext::sh -c touch% {marker}", "branch": "main", "old": None, "new": "a" * 40}
    run_cli("emit", "branch_update", json.dumps(payload), "--spool", ci["spool"])
    [log] = wait_for(lambda: list((ci["spool"] / "failed").glob("*/*-branch_update.*.log")), message="the refusal")
    assert "refused" in log.read_text()
    assert not marker.exists()


@pytest.fixture
def quick_ci(tmp_path, start_node):
    """Like `ci`, but a worker counts as lost after 3 s without a heartbeat."""
    spool, store = tmp_path / "spool", tmp_path / "store"
    hub = start_node("hub", "--spool", spool, "--store", f"file://{store}", "--workdir", tmp_path / "ciwork" / "hub",
                     "--tick", "0.3", "--grace", "1", env={"TRIVIALCI_LOST_AFTER": "3"})
    yield {"spool": spool, "store": store, "hub": hub}
    hub.stop()
    for pid in local_worker_pids(spool):
        os.kill(pid, signal.SIGTERM)
    wait_for(lambda: not local_worker_pids(spool), timeout=30, message="the booted workers to stop")


def test_a_job_survives_its_worker_being_killed(quick_ci, origin, tmp_path):
    ci = quick_ci
    sha = origin.commit("main", {"build": slow_build()})
    push_event(ci["spool"], origin, "main", sha)
    [first] = wait_for(lambda: building(ci["spool"]), timeout=60, message="the job to build")
    old_worker = json.loads((ci["spool"] / "workers" / first["worker"] / "worker.json").read_text())["pid"]
    os.kill(old_worker, signal.SIGKILL)

    again = wait_for(lambda: [j for j in building(ci["spool"]) if j["attempt"] == 2], timeout=60,
                     message="attempt 2 to build on a fresh worker")
    assert again[0]["job"] == first["job"]
    fresh = json.loads((ci["spool"] / "workers" / again[0]["worker"] / "worker.json").read_text())["pid"]
    assert fresh != old_worker
    release_build(worker_disk(tmp_path, again[0]), first["job"])
    jobs = wait_for(lambda: store_jobs(ci["store"]), timeout=60, message="the record")
    record = jobs[first["job"]]
    assert record["status"] == "PASSED" and record["attempt"] == 2
    statuses = wait_for(lambda: "PASSED" in job_statuses(ci["spool"], first["job"])
                        and job_statuses(ci["spool"], first["job"]), message="the PASSED status handled")
    assert "LOST" in statuses and statuses.count("PASSED") == 1


def job_statuses(spool: Path, job_id: str) -> list[str]:
    """The statuses the hub handled for a job, in order (from done/ alone)."""
    events = [json.loads(p.read_text()) for p in sorted((spool / "done").glob("*/*-work_status.*.json"))
              if not p.name.endswith(".result.json")]
    return [event["status"] for event in events if event["job"] == job_id]


def test_deleted_state_is_rebuilt_from_the_event_log(ci, origin, tmp_path, start_node):
    sha = origin.commit("main", {"build": BUILD_OK})
    push_event(ci["spool"], origin, "main", sha)
    [(job_id, job)] = wait_for(lambda: store_jobs(ci["store"]), timeout=60, message="the record").items()
    wait_for(lambda: hub_jobs(ci["spool"]).get(job_id, {}).get("status") == "PASSED", message="the job view")
    before = run_cli("jobs", "--spool", ci["spool"], "--json")
    assert ci["hub"].stop() == 0
    shutil.rmtree(ci["spool"] / "state")
    hub = start_node("hub", "--spool", ci["spool"], "--store", f"file://{ci['store']}",
                     "--workdir", tmp_path / "ciwork" / "hub", "--tick", "0.3", "--grace", "1")
    wait_for(lambda: (ci["spool"] / "state" / ".built").exists(), message="the state to be rebuilt")
    after = run_cli("jobs", "--spool", ci["spool"], "--json")
    assert json.loads(after.stdout)["recent"] == json.loads(before.stdout)["recent"]
    assert hub_jobs(ci["spool"])[job_id]["status"] == "PASSED"
    hub.stop()


def test_history_reads_the_store_with_the_hub_stopped(ci, origin):
    sha = origin.commit("main", {"build": BUILD_OK})
    push_event(ci["spool"], origin, "main", sha)
    [(job_id, job)] = wait_for(lambda: store_jobs(ci["store"]), timeout=60, message="the record").items()
    assert ci["hub"].stop() == 0
    for pid in local_worker_pids(ci["spool"]):
        os.kill(pid, signal.SIGTERM)
    wait_for(lambda: not local_worker_pids(ci["spool"]), message="the workers to stop")
    shutil.rmtree(ci["spool"])
    store = f"file://{ci['store']}"
    listed = run_cli("history", "list", "--store", store)
    assert job_id in listed.stdout and "main" in listed.stdout
    shown = run_cli("history", "show", job_id, "--store", store, "--json")
    assert json.loads(shown.stdout)["sha"] == sha


def test_up_builds_every_branch_and_ctrl_c_stops_everything(origin, tmp_path, start_node):
    sha = origin.commit("main", {"build": BUILD_OK})
    spool, store = tmp_path / "spool", tmp_path / "store"
    up = start_node("up", "--repo", origin.bare, "--spool", spool, "--store", f"file://{store}",
                    "--workdir", tmp_path / "ciwork")
    try:
        check_up(up, origin, spool, store, sha)
    finally:  # up stops its tree on SIGINT; a SIGKILL by the fixture would orphan it
        if up.proc.poll() is None:
            up.stop(signal.SIGINT, timeout=60)
        for pid in local_worker_pids(spool):
            os.kill(pid, signal.SIGKILL)


def check_up(up, origin, spool, store, sha):
    [(job_id, job)] = wait_for(lambda: store_jobs(store), timeout=60, message="the first build").items()
    assert job["status"] == "PASSED" and job["sha"] == sha and job["branch"] == "main"
    pushed = origin.commit("main", {"build": BUILD_OK}, message="a second push")
    wait_for(lambda: any(j["sha"] == pushed and j["status"] == "PASSED" for j in store_jobs(store).values()),
             timeout=60, message="the pushed commit to be built (the gitwatcher saw the push)")
    workers = local_worker_pids(spool)
    assert workers, "up booted a worker for the build kind"

    assert up.stop(signal.SIGINT, timeout=60) == 0, up.stderr()
    for pid in workers:
        assert not os.path.exists(f"/proc/{pid}") or "Z" in Path(f"/proc/{pid}/stat").read_text().split(")")[1][:3]
    assert "spool" in up.stderr() and str(store) in up.stderr()


def test_an_artifact_the_store_refuses_still_leaves_a_record(ci, origin):
    build = "#!/bin/sh\necho out > \"$TRIVIALCI_ARTIFACTS/bad$(printf '\\001')name\"\n"
    origin.commit("main", {"build": build})
    push_event(ci["spool"], origin, "main", git("rev-parse", "HEAD", cwd=origin.work))
    [(job_id, job)] = wait_for(lambda: store_jobs(ci["store"]), timeout=60, message="the record").items()
    assert job["status"] == "UNSTORED" and job["verdict"] == "PASSED" and "were not stored" in job["reason"]
    wait_for(lambda: "UNSTORED" in job_statuses(ci["spool"], job_id), message="the hub to hear of it")


def test_only_executable_files_in_trivialci_are_kinds_and_a_script_without_shebang_fails(ci, origin):
    origin.commit("main", {"build": "echo no shebang here\n"})
    notes = origin.work / ".trivialci" / "notes"
    notes.write_text("not a job\n")
    sha = origin.commit("main", {})
    push_event(ci["spool"], origin, "main", sha)
    [(job_id, job)] = wait_for(lambda: store_jobs(ci["store"]), timeout=60, message="the record").items()
    assert job["kind"] == "build" and job["status"] == "FAILED"
    assert job["reason"].startswith("cannot run .trivialci/build") and "#!" in job["reason"]


def test_build_wait_on_a_skipped_branch_says_so_at_once(ci, origin):
    origin.commit("tmp/scratch", {"build": BUILD_OK})
    skipped = run_cli("build", "--repo", origin.bare, "--branch", "tmp/scratch", "--wait", "--timeout", "60",
                      "--spool", ci["spool"], timeout=30)
    assert skipped.returncode == 1 and "skipped" in skipped.stdout


def test_a_job_superseded_while_queued_still_has_a_record_in_the_store(ci, origin, tmp_path):
    busy = origin.commit("main", {"build": slow_build()})
    push_event(ci["spool"], origin, "main", busy)
    [running] = wait_for(lambda: building(ci["spool"]), timeout=60, message="the only worker to be busy")
    first = origin.commit("feature/z", {"build": BUILD_OK})
    push_event(ci["spool"], origin, "feature/z", first)
    [queued] = wait_for(lambda: [j for j in hub_jobs(ci["spool"]).values() if j["status"] == "QUEUED"],
                        message="the feature job to wait in the queue")
    second = origin.commit("feature/z", {"build": BUILD_OK}, message="again")
    push_event(ci["spool"], origin, "feature/z", second, old=first)
    record = wait_for(lambda: store_jobs(ci["store"]).get(queued["job"]), message="the superseded record")
    assert record["status"] == "SUPERSEDED" and record["sha"] == first and "newer push" in record["reason"]
    release_build(worker_disk(tmp_path, running), running["job"])
    wait_for(lambda: any(j["sha"] == second and j["status"] == "PASSED" for j in store_jobs(ci["store"]).values()),
             timeout=60, message="the newer push to be built")


def test_a_job_cancelled_before_its_build_starts_never_builds(origin, tmp_path):
    from trivialci.worker import jobrun
    from trivialci.spool.layout import hub_dir

    ran = tmp_path / "ran"
    sha = origin.commit("main", {"build": f"#!/bin/sh\ntouch '{ran}'\n"})
    spool, workdir = tmp_path / "spool", tmp_path / "ciwork" / "w1"
    hub_dir(spool).create()
    package = {"job": "20261125T000000Z-abcdef", "repo": str(origin.bare), "branch": "main", "sha": sha,
               "kind": "build", "attempt": 1}
    assert jobrun.stop(workdir, package["job"], "CANCELLED", "cancelled by request") is False
    record = jobrun.JobRun(package, "w1", workdir, spool, f"file://{tmp_path / 'store'}").run()
    assert record["status"] == "CANCELLED" and record["reason"] == "cancelled by request"
    assert not ran.exists() and not (workdir / "jobs" / package["job"]).exists()


def test_a_worker_booted_on_the_hubs_host_checks_out_from_the_hubs_mirror(ci, origin, tmp_path):
    sha = origin.commit("main", {"build": BUILD_OK})
    assert push_event(ci["spool"], origin, "main", sha).returncode == 0
    [job] = wait_for(lambda: store_jobs(ci["store"]), timeout=60, message="the job record").values()
    assert job["status"] == "PASSED"
    hub_mirrors = tmp_path / "ciwork" / "hub" / "mirrors"
    assert [p.name for p in hub_mirrors.glob("*.git")] == [f"{repo_key(str(origin.bare))}.git"]
    assert not (tmp_path / "ciwork" / job["worker"] / "mirrors").exists(), "one fetch per push on one host"
