"""Hostile events of the example flow, dropped into a real hub or worker that runs the shipped pipeline.

Anyone who can write the spool can drop any event. Each one here is refused by
the script that receives it: it lands in failed/ with one line `refused: ...`
in its log (no traceback), nothing outside the node's roots is touched, and the
next good event is still handled (a push still builds).
"""

import json
import os
import subprocess
from pathlib import Path

import pytest
from conftest import wait_for
from test_flow import BUILD_OK, ci, git, hub_jobs, origin, push_event, store_jobs  # noqa: F401 (fixtures)

import trivialci
from trivialci.spool.layout import hub_dir

JOB = "20261125T025439Z-8aa937"
OTHER_JOB = "20261125T025440Z-000001"


def outcome_of(node_root: Path, delivered, timeout=60.0) -> tuple[str, str]:
    """Where the event delivered as `delivered` ended (done or failed) and its log, once it is recorded."""
    name = Path(delivered).name

    def recorded():
        for where in ("done", "failed"):
            for result_path in (Path(node_root) / where).glob("*/*.result.json"):
                result = json.loads(result_path.read_text())
                if result["event"] == name:
                    log = result_path.parent / result["log"] if result["log"] else None
                    return where, log.read_text() if log else result["reason"]
        return None
    return wait_for(recorded, timeout=timeout, message=f"{name} to be recorded")


def assert_refused(node_root: Path, delivered, *words: str, prefix="refused: ") -> str:
    where, log = outcome_of(node_root, delivered)
    assert where == "failed", f"{Path(delivered).name} was handled: {log}"
    assert "Traceback" not in log, log
    [line] = [line for line in log.splitlines() if line.startswith(prefix)]
    for word in words:
        assert word in line, line
    return line


def sent_to_hub(spool: Path, event_type: str) -> list[dict]:
    """The payloads of `event_type` in the hub's inbox (no hub runs: they wait there)."""
    return [json.loads(p.read_text()) for p in sorted((spool / "inbox").glob(f"{event_type}.*.json"))]


def package(origin, sha, **fields) -> dict:
    return {"job": JOB, "repo": str(origin.bare), "branch": "main", "sha": sha, "kind": "build", "attempt": 1,
            "params": {}, "queued": "2026-11-25T02:54:39.223Z", "timeout": 60.0, "_timeout": 660.0, **fields}


@pytest.fixture
def worker(tmp_path, start_node):
    """A real worker, w1 of kind build, on the shipped pipeline; no hub runs, its inbox collects what w1 sends."""
    spool = tmp_path / "spool"
    hub_dir(spool).create()
    workdir = tmp_path / "wd" / "w1"
    node = start_node("worker", "--spool", spool, "--name", "w1", "--kind", "build", "--workdir", workdir,
                      "--log-listen", "off", "--grace", "1", "--jobs", "2")
    root = spool / "workers" / "w1"
    wait_for(lambda: sent_to_hub(spool, "work_required"), message="the worker to start and ask for work")
    yield {"spool": spool, "root": root, "workdir": workdir}
    node.stop()


def to_worker(worker, event_type: str, payload: dict) -> str:
    return trivialci.emit(event_type, payload, to="worker:w1", spool=worker["spool"])


def statuses_of(spool: Path, job_id: str) -> list[str]:
    return [p["status"] for p in sent_to_hub(spool, "work_status") if p.get("job") == job_id]


# --- finding 1: ids that name paths on the worker's disk --------------------------------------------


def test_start_work_with_a_job_id_that_climbs_out_of_the_workdir_touches_nothing_outside_it(worker, origin, tmp_path):
    sha = origin.commit("main", {"build": BUILD_OK})
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "keep.txt").write_text("mine\n")
    before = sorted(os.listdir(tmp_path))

    delivered = to_worker(worker, "start_work", package(origin, sha, job="../../../victim"))

    assert_refused(worker["root"], delivered, "bad job id")
    assert sorted(os.listdir(victim)) == ["keep.txt"] and (victim / "keep.txt").read_text() == "mine\n"
    assert sorted(os.listdir(tmp_path)) == before, "nothing was made beside the workdir"
    assert statuses_of(worker["spool"], "../../../victim") == []


def test_start_work_with_a_kind_outside_trivialci_runs_nothing_and_the_next_job_builds(worker, origin):
    sha = origin.commit("main", {"build": BUILD_OK})

    delivered = to_worker(worker, "start_work", package(origin, sha, kind="../" * 30 + "usr/bin/id"))

    assert_refused(worker["root"], delivered, "bad kind")
    assert statuses_of(worker["spool"], JOB) == [], "nothing ran, nothing was reported"
    to_worker(worker, "start_work", package(origin, sha, job=OTHER_JOB))
    wait_for(lambda: "PASSED" in statuses_of(worker["spool"], OTHER_JOB), timeout=60, message="the good job to pass")


def test_start_work_for_a_kind_this_worker_does_not_build_is_refused(worker, origin):
    sha = origin.commit("main", {"build": BUILD_OK, "deploy": BUILD_OK})
    delivered = to_worker(worker, "start_work", package(origin, sha, kind="deploy"))
    assert_refused(worker["root"], delivered, "deploy", "build")
    assert statuses_of(worker["spool"], JOB) == []


def test_a_build_entry_point_that_links_outside_the_checkout_is_not_run(worker, origin):
    link = origin.work / ".trivialci" / "build"
    link.parent.mkdir(parents=True, exist_ok=True)
    os.symlink("/usr/bin/id", link)
    git("add", "-A", cwd=origin.work)
    git("commit", "-q", "-m", "a link for an entry point", cwd=origin.work)
    git("push", "-q", "-f", "origin", "main", cwd=origin.work)
    sha = git("rev-parse", "HEAD", cwd=origin.work)

    delivered = to_worker(worker, "start_work", package(origin, sha))

    assert outcome_of(worker["root"], delivered)[0] == "done"
    [final] = [p for p in sent_to_hub(worker["spool"], "work_status") if p["job"] == JOB and p["status"] != "BUILDING"]
    assert final["status"] == "FAILED" and "outside the checkout" in final["reason"], final
    assert final["exit_code"] is None


def test_cancel_work_with_a_job_id_that_climbs_out_of_the_workdir_signals_and_writes_nothing(worker, tmp_path):
    victim = subprocess.Popen(["sleep", "120"], start_new_session=True)
    try:
        (tmp_path / "wd").mkdir(exist_ok=True)
        (tmp_path / "wd" / "evil.pid").write_text(str(victim.pid))  # WORKDIR/jobs/../../evil.pid

        delivered = to_worker(worker, "cancel_work", {"job": "../../evil", "attempt": 1, "status": "CANCELLED",
                                                      "reason": "cancelled by request"})

        assert_refused(worker["root"], delivered, "bad job id")
        assert victim.poll() is None, "the process group named in the .pid file was signalled"
        assert not (tmp_path / "wd" / "evil.cancel").exists()
    finally:
        victim.kill()
        victim.wait()


@pytest.mark.parametrize("fields, words", [
    ({"status": "PASSED"}, "CANCELLED or SUPERSEDED"),
    ({"status": ["CANCELLED"]}, "CANCELLED or SUPERSEDED"),
    ({"status": {"x": 1}}, "CANCELLED or SUPERSEDED"),
    ({"reason": "x" * 5000}, "reason"),
    ({"reason": "\x1b]0;owned\x07"}, "control characters"),
    ({"attempt": "1"}, "attempt"),
], ids=["status", "status_list", "status_object", "long_reason", "escape_in_reason", "attempt"])
def test_cancel_work_with_a_bad_field_is_refused(worker, fields, words):
    payload = {"job": JOB, "attempt": 1, "status": "CANCELLED", "reason": "cancelled by request", **fields}
    assert_refused(worker["root"], to_worker(worker, "cancel_work", payload), words)
    assert not (worker["workdir"] / "jobs" / f"{JOB}.cancel").exists()


@pytest.fixture
def hub(tmp_path, start_node):
    """A real hub on the shipped pipeline (no tick, no store)."""
    spool = tmp_path / "spool"
    node = start_node("hub", "--spool", spool, "--workdir", tmp_path / "ciwork" / "hub", "--grace", "1")
    wait_for(lambda: (spool / "hub.json").exists(), message="the hub to start")
    yield spool
    node.stop()


@pytest.mark.parametrize("payload, words", [
    ({"kind": "build", "name": "../../outside"}, "bad worker name"),
    ({"kind": "../../k", "name": "w9"}, "bad kind"),
    ({"kind": "build"}, "bad worker name"),
], ids=["name", "kind", "no_name"])
def test_boot_worker_with_a_bad_name_or_kind_starts_nothing_and_writes_nothing_outside(hub, tmp_path, payload,
                                                                                         words):
    delivered = trivialci.emit("boot_worker", payload, spool=hub)
    assert_refused(hub, delivered, words, prefix="not booted: ")
    assert not (tmp_path / "outside.log").exists()
    assert [p.name for p in (hub / "workers").iterdir()] == []


@pytest.mark.parametrize("event_type", ["start_work", "cancel_work", "worker_started"])
def test_a_workers_event_dropped_into_the_hubs_inbox_is_refused_in_one_line(hub, event_type):
    delivered = trivialci.emit(event_type, {"job": JOB, "attempt": 1, "status": "CANCELLED", "reason": "x"},
                               spool=hub)
    assert_refused(hub, delivered, "worker's event", "hub is no worker")


HUB_EVENTS = {  # a well-formed payload each: what is refused is the node it was dropped into
    "branch_update": {"repo": "/nonexistent/repo.git", "branch": "main", "old": None, "new": "a" * 40},
    "work_status": {"job": JOB, "status": "PASSED", "attempt": 1},
    "work_required": {"worker": "w1", "kind": "build"},
    "work_done": {"job": JOB, "worker": "w1", "status": "PASSED"},
    "cancel": {"job": JOB}, "rebuild": {"job": JOB}, "pause": {}, "resume": {}, "branch_delete": {"repo": "/r.git", "branch": "main"},
    "worker_status": {"worker": "w1", "state": "lost"}, "approve": {"job": JOB, "sha": "a" * 40, "by": "x"},
    "boot_worker": {"kind": "build", "name": "w9"}, "prune": {},
    "commit_status": {"forge": "github", "forge_repo": "o/a", "sha": "a" * 40, "job": JOB, "kind": "build",
                      "status": "PASSED"},
}


@pytest.mark.parametrize("event_type", sorted(HUB_EVENTS))
def test_a_hubs_event_dropped_into_a_workers_inbox_changes_nothing_of_the_hubs(worker, event_type):
    """The worker runs the same pipeline; a hub's script there must not write the hub's state, boot or prune."""
    spool = worker["spool"]
    delivered = to_worker(worker, event_type, HUB_EVENTS[event_type])
    assert_refused(worker["root"], delivered, "the hub's", "w1")
    assert sorted((spool / "state").rglob("*")) == [], "the hub's state/ was written from a worker"
    assert not (spool / "workers" / "w9.log").exists() and not (spool / "workers" / "w9").exists()


# --- finding 2: fields not type- or range-checked on the hub ----------------------------------------

def hostile_hub_events(origin, sha) -> list[tuple[str, dict, str]]:
    """(type, payload, words its refusal names): each breaks one field's grammar, type or range."""
    queued = {"job": JOB, "status": "QUEUED", "attempt": 1, "repo": str(origin.bare), "branch": "main", "sha": sha,
              "kind": "build", "params": {}, "queued": "2026-11-25T00:00:00.000Z"}
    push = {"repo": str(origin.bare), "branch": "main", "old": None, "new": sha}
    return [
        ("work_status", {**queued, "params": "x"}, "params"),
        ("work_status", {**queued, "params": {"timeout": 1e6}}, "timeout"),
        ("work_status", {**queued, "params": {"a b": "x"}}, "parameter name"),
        ("work_status", {**queued, "params": {"x": "a\u0000b"}}, "control characters"),
        ("work_status", {**queued, "params": {f"p{n}": n for n in range(40)}}, "at most 32"),
        ("work_status", {**queued, "attempt": "1"}, "attempt"),
        ("work_status", {**queued, "attempt": 0}, "attempt"),
        ("work_status", {**queued, "attempt": True}, "attempt"),
        ("work_status", {**queued, "status": "DONE"}, "status"),
        ("work_status", {**queued, "queued": "yesterday"}, "time"),
        ("work_status", {**queued, "kind": "../../inbox"}, "bad kind"),
        ("work_status", {**queued, "sha": "HEAD"}, "commit id"),
        ("work_status", {**queued, "repo": "ext::sh -c id"}, "repository"),
        ("work_status", {**queued, "evil": 1}, "evil"),
        ("work_status", {"job": JOB, "status": "FAILED", "attempt": 1, "exit_code": "x"}, "exit_code"),
        ("work_status", {"job": JOB, "status": "FAILED", "attempt": 1, "reason": "x" * 5000}, "reason"),
        ("work_status", {"job": "../../x", "status": "FAILED", "attempt": 1}, "bad job id"),
        ("work_required", {"worker": "w1", "kind": "../../x"}, "bad kind"),
        ("work_required", {"worker": "w1", "kind": "build", "after": JOB, "attempt": "x"}, "attempt"),
        ("work_required", {"kind": "build"}, "bad worker name"),
        ("work_done", {"job": "../x", "worker": "w1", "status": "PASSED"}, "bad job id"),
        ("work_done", {"worker": "w1", "status": "PASSED"}, "bad job id"),
        ("cancel", {"job": "../state/.built"}, "bad job id"),
        ("rebuild", {"job": "../state/.built"}, "bad job id"),
        ("rebuild", {"job": JOB, "evil": 1}, "evil"),
        ("rebuild", {"job": JOB, "request": "../../x"}, "request"),
        ("rebuild", {"job": JOB}, f"no job {JOB}"),
        ("work_status", {**queued, "stage": -1}, "stage"),
        ("work_status", {**queued, "upstream": [{"job": JOB, "kind": "../../x"}]}, "bad kind"),
        ("work_status", {**queued, "plan": [{"job": JOB, "kind": "b", "stage": "0"}]}, "stage"),
        ("work_status", {**queued, "rebuild_of": "../x"}, "bad job id"),
        ("branch_update", {**push, "params": {"timeout": 1e6}}, "timeout"),
        ("branch_update", {**push, "params": "x"}, "params"),
        ("branch_update", {**push, "old": "yesterday"}, "commit id"),
        ("branch_update", {**push, "request": "../../x"}, "request"),
        ("branch_delete", {"repo": str(origin.bare), "old": sha}, "branch"),
    ]


def test_hostile_hub_events_are_refused_with_their_reason_and_a_push_still_builds(ci, origin):
    sha = origin.commit("main", {"build": BUILD_OK})
    sent = [(trivialci.emit(kind, payload, spool=ci["spool"]), words)
            for kind, payload, words in hostile_hub_events(origin, sha)]
    for delivered, words in sent:
        assert_refused(ci["spool"], delivered, words)
    assert JOB not in hub_jobs(ci["spool"]) and list((ci["spool"] / "state" / "workers").glob("*")) == []

    push_event(ci["spool"], origin, "main", sha)
    [(job_id, job)] = wait_for(lambda: store_jobs(ci["store"]), timeout=60, message="the push to build").items()
    assert job["status"] == "PASSED" and job_id != JOB


def test_a_build_timeout_out_of_range_leaves_no_job_stuck_and_the_next_push_builds(ci, origin):
    sha = origin.commit("main", {"build": BUILD_OK})
    delivered = trivialci.emit("branch_update", {"repo": str(origin.bare), "branch": "main", "old": None,
                                                 "new": sha, "params": {"timeout": 1e6}}, spool=ci["spool"])
    assert_refused(ci["spool"], delivered, "timeout", "86400")
    assert hub_jobs(ci["spool"]) == {}

    other = origin.commit("feature/a", {"build": BUILD_OK})
    push_event(ci["spool"], origin, "feature/a", other)
    [(_, job)] = wait_for(lambda: store_jobs(ci["store"]), timeout=60, message="the next push to build").items()
    assert job["status"] == "PASSED" and job["sha"] == other


def test_a_params_timeout_in_range_is_the_builds_time_limit(ci, origin):
    sha = origin.commit("main", {"build": "#!/bin/sh\nsleep 30\n"})
    trivialci.emit("branch_update", {"repo": str(origin.bare), "branch": "main", "old": None, "new": sha,
                                     "params": {"timeout": 1}}, spool=ci["spool"])
    [(_, job)] = wait_for(lambda: store_jobs(ci["store"]), timeout=60, message="the record").items()
    assert job["status"] == "FAILED" and job["reason"] == "timed out after 1 s"
