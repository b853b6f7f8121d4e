"""Stages end to end: a real hub on the shipped pipeline, the workers it boots (sandboxed where bwrap works), a
real repository with .trivialci/00-build, 10-test, 10-lint, 20-deploy, and a directory store."""

import json
import os
import shutil
import signal

from conftest import gated_build, release_build, run_cli, wait_for
from test_flow import ci, hub_jobs, origin, push_event, quick_ci, store_jobs, worker_disk  # noqa: F401 (fixtures)

BUILD = "#!/bin/sh\necho made > \"$TRIVIALCI_ARTIFACTS/out.txt\"\nmkdir \"$TRIVIALCI_ARTIFACTS/sub\"\n" \
        "echo deep > \"$TRIVIALCI_ARTIFACTS/sub/deep.txt\"\n"
READS_BUILD = "echo \"stage $TRIVIALCI_STAGE read: $(cat \"$TRIVIALCI_UPSTREAM/build/out.txt\")\"\n" \
              "cat \"$TRIVIALCI_UPSTREAM/build/sub/deep.txt\"\n" \
              "touch \"$TRIVIALCI_UPSTREAM/build/written\" 2>/dev/null && echo upstream-writable\n"
DEPLOY = "#!/bin/sh\n[ \"$TRIVIALCI_BRANCH\" = main ] || { echo \"not main: no deploy\"; exit 0; }\n" \
         "ls \"$TRIVIALCI_UPSTREAM\"\necho deployed\n"
PASSES = "#!/bin/sh\necho ok\n"
FAILS = "#!/bin/sh\necho 'error: it does not build' >&2\nexit 3\n"


def by_kind(jobs: dict) -> dict:
    return {job["kind"]: job for job in jobs.values()}


def records_of(ci, count: int) -> dict:
    """The store's records once `count` of them are final, by kind."""
    final = ("PASSED", "FAILED", "SKIPPED", "SUPERSEDED", "CANCELLED", "UNSTORED")
    return by_kind(wait_for(lambda: len([j for j in store_jobs(ci["store"]).values() if j["status"] in final])
                            >= count and store_jobs(ci["store"]), timeout=120, message=f"{count} final records"))


def log_of(ci, job: dict) -> str:
    return (ci["store"] / "jobs" / job["job"] / "log.txt").read_text()


def building(spool, kinds) -> dict:
    jobs = by_kind({k: j for k, j in hub_jobs(spool).items() if j["status"] == "BUILDING"})
    return jobs if set(kinds) <= set(jobs) else {}


def test_three_stages_pass_in_order_on_the_builds_artifacts_and_one_stage_runs_at_once(ci, origin, tmp_path):
    sha = origin.commit("main", {"00-build": BUILD, "10-test": gated_build(before=READS_BUILD),
                                 "10-lint": gated_build(), "20-deploy": DEPLOY})
    push_event(ci["spool"], origin, "main", sha)
    both = wait_for(lambda: building(ci["spool"], ("test", "lint")), timeout=120,
                    message="test and lint building at once")
    assert both["test"]["worker"] != both["lint"]["worker"]
    assert hub_jobs(ci["spool"])[both["test"]["plan"][-1]["job"]]["status"] == "WAITING"  # deploy
    for job in both.values():
        release_build(worker_disk(tmp_path, job), job["job"])
    jobs = records_of(ci, 4)
    assert {kind: job["status"] for kind, job in jobs.items()} == dict.fromkeys(("build", "test", "lint", "deploy"),
                                                                                "PASSED")
    build, test, lint, deploy = (jobs[kind] for kind in ("build", "test", "lint", "deploy"))
    assert test["started"] >= build["ended"] and lint["started"] >= build["ended"]
    assert deploy["started"] >= max(test["ended"], lint["ended"])
    assert (test["stage"], test["upstream"], test["push"]) == (10, [{"job": build["job"], "kind": "build"}],
                                                               build["job"])
    assert "stage 10 read: made" in log_of(ci, test) and "deep" in log_of(ci, test)
    assert "upstream-writable" not in log_of(ci, test) or not shutil.which("bwrap")
    assert "deployed" in log_of(ci, deploy) and {"build", "lint", "test"} <= set(log_of(ci, deploy).split())
    shown = run_cli("jobs", "--spool", ci["spool"])
    assert "stage 10" in shown.stdout and build["job"] in shown.stdout


def test_a_failed_build_skips_test_and_lint_which_never_run(ci, origin):
    sha = origin.commit("feature/f", {"00-build": FAILS, "10-test": PASSES, "10-lint": PASSES, "20-deploy": DEPLOY})
    push_event(ci["spool"], origin, "feature/f", sha)
    jobs = records_of(ci, 4)
    assert jobs["build"]["status"] == "FAILED"
    for kind in ("test", "lint", "deploy"):
        assert (jobs[kind]["status"], jobs[kind]["reason"]) == ("SKIPPED", "skipped: build FAILED")
        assert not (ci["store"] / "jobs" / jobs[kind]["job"] / "log.txt").exists()
    assert not (ci["spool"] / "workers" / "test-1").exists(), "no worker of kind test was even booted"
    shown = run_cli("history", "show", jobs["test"]["job"], "--store", f"file://{ci['store']}")
    assert "skipped: build FAILED" in shown.stdout and "stage" in shown.stdout
    push = run_cli("history", "push", jobs["deploy"]["job"], "--store", f"file://{ci['store']}").stdout.splitlines()
    assert [line.split()[:3] for line in push[1:]] == [
        ["0", jobs["build"]["job"], "FAILED"], ["10", jobs["lint"]["job"], "SKIPPED"],
        ["10", jobs["test"]["job"], "SKIPPED"], ["20", jobs["deploy"]["job"], "SKIPPED"]]


def test_a_newer_push_mid_chain_supersedes_the_rest_of_the_old_chain(ci, origin, tmp_path):
    first = origin.commit("feature/s", {"00-build": BUILD, "10-test": gated_build(), "20-deploy": DEPLOY})
    push_event(ci["spool"], origin, "feature/s", first)
    old = wait_for(lambda: building(ci["spool"], ("test",)), timeout=120, message="stage 10 building")["test"]
    second = origin.commit("feature/s", {"10-test": PASSES})
    push_event(ci["spool"], origin, "feature/s", second, old=first)
    jobs = wait_for(lambda: len(store_jobs(ci["store"])) == 6 and store_jobs(ci["store"]), timeout=120,
                    message="six records")
    old_chain = {j["kind"]: j["status"] for j in jobs.values() if j["sha"] == first}
    assert old_chain == {"build": "PASSED", "test": "SUPERSEDED", "deploy": "SUPERSEDED"}
    wait_for(lambda: {j["status"] for j in store_jobs(ci["store"]).values() if j["sha"] == second} == {"PASSED"},
             timeout=120, message="the new chain to pass")
    assert jobs[old["job"]]["status"] == "SUPERSEDED"


def test_a_worker_killed_in_stage_two_is_replaced_and_stage_three_follows(quick_ci, origin, tmp_path):
    ci = quick_ci
    sha = origin.commit("main", {"00-build": BUILD, "10-test": gated_build(before=READS_BUILD), "20-deploy": DEPLOY})
    push_event(ci["spool"], origin, "main", sha)
    first = wait_for(lambda: building(ci["spool"], ("test",)), timeout=120, message="stage 10 building")["test"]
    os.kill(json.loads((ci["spool"] / "workers" / first["worker"] / "worker.json").read_text())["pid"], signal.SIGKILL)
    again = wait_for(lambda: [j for j in hub_jobs(ci["spool"]).values() if j["job"] == first["job"]
                              and j["status"] == "BUILDING" and j["attempt"] == 2], timeout=120,
                     message="attempt 2 of the test")[0]
    release_build(worker_disk(tmp_path, again), again["job"])
    jobs = records_of(ci, 3)
    assert (jobs["test"]["status"], jobs["test"]["attempt"]) == ("PASSED", 2)
    assert "stage 10 read: made" in log_of(ci, jobs["test"])
    assert jobs["deploy"]["status"] == "PASSED" and jobs["deploy"]["started"] >= jobs["test"]["ended"]


def test_rebuild_of_a_passed_and_of_a_failed_job_with_the_later_stages(ci, origin):
    sha = origin.commit("main", {"00-build": BUILD, "10-test": FAILS, "20-deploy": DEPLOY})
    push_event(ci["spool"], origin, "main", sha)
    jobs = records_of(ci, 3)
    assert jobs["deploy"]["status"] == "SKIPPED"
    again = run_cli("rebuild", jobs["build"]["job"], "--wait", "--timeout", "90", "--spool", ci["spool"], timeout=120)
    assert again.returncode == 0 and "PASSED" in again.stdout, again.stdout + again.stderr
    failed = run_cli("rebuild", jobs["test"]["job"], "--downstream", "--wait", "--timeout", "90",
                     "--spool", ci["spool"], timeout=120)
    assert failed.returncode == 1 and "FAILED" in failed.stdout and "skipped: test FAILED" in failed.stdout
    stored = store_jobs(ci["store"])
    rebuilt = {j["rebuild_of"]: j for j in stored.values() if j.get("rebuild_of")}
    assert rebuilt[jobs["build"]["job"]]["status"] == "PASSED" and rebuilt[jobs["build"]["job"]]["sha"] == sha
    assert rebuilt[jobs["test"]["job"]]["status"] == "FAILED"
    assert rebuilt[jobs["deploy"]["job"]]["status"] == "SKIPPED"
    refused = run_cli("rebuild", jobs["deploy"]["job"], "--wait", "--timeout", "30", "--spool", ci["spool"])
    assert refused.returncode == 2 and "rebuild the job it waited for" in refused.stderr  # said at once
    unknown = run_cli("rebuild", "20261125T000000Z-0000a1", "--spool", ci["spool"])
    assert unknown.returncode == 2 and "no job 20261125T000000Z-0000a1 in the hub's state" in unknown.stderr
    assert unknown.stderr.count("\n") == 1 and not list((ci["spool"] / "inbox").glob("rebuild.*"))
    bad = run_cli("rebuild", "nope", "--spool", ci["spool"])
    assert bad.returncode != 0 and bad.stderr.count("\n") == 1 and "is not a job id" in bad.stderr


def test_state_deleted_mid_chain_is_rebuilt_and_the_chain_goes_on(ci, origin, tmp_path, start_node):
    sha = origin.commit("main", {"00-build": BUILD, "10-test": gated_build(), "20-deploy": DEPLOY})
    push_event(ci["spool"], origin, "main", sha)
    test = wait_for(lambda: building(ci["spool"], ("test",)), timeout=120, message="stage 10 building")["test"]
    assert ci["hub"].stop() == 0
    before = hub_jobs(ci["spool"])
    shutil.rmtree(ci["spool"] / "state")
    hub = start_node("hub", "--spool", ci["spool"], "--store", f"file://{ci['store']}",
                     "--workdir", tmp_path / "ciwork" / "hub", "--tick", "0.3", "--grace", "1")
    wait_for(lambda: (ci["spool"] / "state" / ".built").exists(), message="the state to be rebuilt")
    assert hub_jobs(ci["spool"]) == before
    release_build(worker_disk(tmp_path, test), test["job"])
    jobs = records_of(ci, 3)
    assert {kind: job["status"] for kind, job in jobs.items()} == dict.fromkeys(("build", "test", "deploy"), "PASSED")
    hub.stop()
