"""Stages on the hub: .trivialci/NN-KIND plans a push, a stage is queued when the one before PASSED, a failure
skips the later stages, a newer push supersedes the chain, a rebuild repeats a job (and what follows it).

The shipped pipeline scripts run on a real spool, in this process (tests/hubsim.py); workers are played by
the test, reporting as start_work.py does. Every case ends with state/ deleted and rebuilt: it must be the
state it replaced.
"""

import json

import pytest
from hubsim import SimulatedHub, assert_rebuilt_equals_live, beat

import trivialci
from trivialci.errors import BadInput
from trivialci.hub import HubState, plan_stages
from trivialci.spool.layout import worker_dir

START = 1_790_000_000.0
THREE_STAGES = ["00-build", "10-lint", "10-test", "20-deploy"]
WORKERS = {"b1": "build", "t1": "test", "l1": "lint", "d1": "deploy"}


class Hub:
    """A simulated hub, and workers of each kind that take the work handed to them when told."""

    def __init__(self, spool):
        self.spool, self.hub, self.sha = spool, SimulatedHub(spool, START), 0
        for pid, name in enumerate(WORKERS, 100):
            beat(spool, name, pid, alive=True)
            self.emit("work_required", {"worker": name, "kind": WORKERS[name]})
        self.hub.drain()

    def emit(self, event_type, payload):
        return trivialci.emit(event_type, payload, to="hub", spool=self.spool)

    def push(self, kinds, branch="feature/x"):
        self.sha += 1
        self.emit("branch_update", {"repo": "/srv/git/app.git", "branch": branch, "old": None,
                                    "new": f"{self.sha:040x}", "kinds": list(kinds)})
        self.hub.drain()

    def offer(self, worker):
        """The start_work waiting in a worker's inbox (taken out of it), or None."""
        offers = sorted(worker_dir(self.spool, worker).inbox.glob("start_work.*.json"))
        if not offers:
            return None
        package = json.loads(offers[0].read_text())
        offers[0].unlink()
        return package

    def run(self, worker, passed=True):
        """The worker builds what it was handed and reports the end, as start_work.py does."""
        package = self.offer(worker)
        assert package, f"{worker} was handed nothing"
        status = "PASSED" if passed else "FAILED"
        self.report(worker, package, "BUILDING", started="2026-09-22T00:00:00.000Z")
        self.report(worker, package, status, ended="2026-09-22T00:01:00.000Z", reason="exit status 0")
        self.emit("work_done", {"job": package["job"], "worker": worker, "status": status})
        self.emit("work_required", {"worker": worker, "kind": WORKERS[worker], "after": package["job"],
                                    "attempt": package["attempt"]})
        self.hub.drain()
        return package

    def report(self, worker, package, status, **fields):
        self.emit("work_status", {"job": package["job"], "status": status, "attempt": package["attempt"],
                                  "worker": worker, **fields})

    def jobs(self):
        state = HubState(self.spool)
        return [state.job(path.stem) for path in sorted((self.spool / "state" / "jobs").glob("*.json"))]

    def by_kind(self):
        return {job["kind"]: job for job in self.jobs()}


@pytest.fixture
def hub(tmp_path):
    return Hub(tmp_path / "spool")


def test_file_names_give_the_stages_in_order_and_files_without_a_number_come_first():
    assert plan_stages(["20-deploy", "build", "10-test", "10-lint", "notes~", "07-x"]) == [
        (0, "build"), (7, "x"), (10, "lint"), (10, "test"), (20, "deploy")]
    assert plan_stages(["010-test", "build"]) == [(0, "build"), (10, "test")]
    assert plan_stages(["10-", "-x", "1-.hidden"]) == []  # no kind in the name: not a job, as before


@pytest.mark.parametrize("names", [["build", "10-build"], ["10-test", "20-test"], ["00-lint", "lint"]])
def test_one_kind_in_two_files_refuses_the_push_naming_both(names):
    with pytest.raises(BadInput, match=f"{names[0]} and .trivialci/{names[1]} both name kind"):
        plan_stages(names)


def test_a_kind_named_twice_refuses_the_push_and_nothing_is_queued(hub):
    hub.push(["10-test", "20-test"])
    [log] = list((hub.spool / "failed").glob("*/*-branch_update.*.json"))
    assert hub.jobs() == []
    assert (hub.spool / "failed").glob("*/*-branch_update.*.result.json")


def test_stages_run_in_order_each_with_the_earlier_jobs_as_its_upstream(hub):
    hub.push(THREE_STAGES)
    jobs = hub.by_kind()
    assert {kind: (job["status"], job["stage"]) for kind, job in jobs.items()} == {
        "build": ("STARTING", 0), "lint": ("WAITING", 10), "test": ("WAITING", 10), "deploy": ("WAITING", 20)}
    assert len({job["push"] for job in jobs.values()}) == 1 and jobs["build"]["push"] == jobs["build"]["job"]
    assert hub.offer("t1") is None and hub.offer("d1") is None

    build = hub.run("b1")
    assert build["stage"] == 0 and build["upstream"] == []
    assert {k: j["status"] for k, j in hub.by_kind().items()} == {
        "build": "PASSED", "lint": "STARTING", "test": "STARTING", "deploy": "WAITING"}
    test = hub.run("t1")
    assert test["upstream"] == [{"job": build["job"], "kind": "build"}] and test["stage"] == 10
    assert hub.by_kind()["deploy"]["status"] == "WAITING"  # lint has not passed yet
    lint = hub.run("l1")
    deploy = hub.run("d1")
    assert sorted(item["kind"] for item in deploy["upstream"]) == ["build", "lint", "test"]
    assert {item["job"] for item in deploy["upstream"]} == {build["job"], test["job"], lint["job"]}
    assert {job["status"] for job in hub.jobs()} == {"PASSED"}
    assert_rebuilt_equals_live(hub.spool)


def test_a_failed_build_skips_the_later_stages_with_the_reason_and_they_never_run(hub):
    hub.push(THREE_STAGES)
    hub.run("b1", passed=False)
    jobs = hub.by_kind()
    assert {kind: job["status"] for kind, job in jobs.items()} == {
        "build": "FAILED", "lint": "SKIPPED", "test": "SKIPPED", "deploy": "SKIPPED"}
    assert {jobs[kind]["reason"] for kind in ("lint", "test", "deploy")} == {"skipped: build FAILED"}
    assert all(hub.offer(worker) is None for worker in ("t1", "l1", "d1"))
    assert not list((hub.spool / "state" / "queue").glob("*/*.json"))
    assert_rebuilt_equals_live(hub.spool)


def test_a_failure_in_the_middle_stage_skips_only_what_follows(hub):
    hub.push(THREE_STAGES)
    hub.run("b1")
    hub.run("t1", passed=False)
    hub.run("l1")
    jobs = hub.by_kind()
    assert (jobs["deploy"]["status"], jobs["deploy"]["reason"]) == ("SKIPPED", "skipped: test FAILED")
    assert hub.offer("d1") is None
    assert_rebuilt_equals_live(hub.spool)


def test_a_newer_push_supersedes_the_whole_chain(hub):
    hub.push(THREE_STAGES)
    first = hub.by_kind()
    hub.push(THREE_STAGES)
    old = {kind: HubState(hub.spool).job(job["job"]) for kind, job in first.items()}
    assert {kind: job["status"] for kind, job in old.items() if kind != "build"} == {
        "lint": "SUPERSEDED", "test": "SUPERSEDED", "deploy": "SUPERSEDED"}
    cancel = list(worker_dir(hub.spool, "b1").inbox.glob("cancel_work.*.json"))
    assert [json.loads(c.read_text())["job"] for c in cancel] == [first["build"]["job"]]
    assert_rebuilt_equals_live(hub.spool)


def test_cancelling_the_running_stage_skips_the_rest(hub):
    hub.push(THREE_STAGES)
    build = hub.by_kind()["build"]
    package = hub.offer("b1")
    hub.report("b1", package, "CANCELLED", ended="2026-09-22T00:01:00.000Z", reason="cancelled by request")
    hub.hub.drain()
    assert {job["reason"] for job in hub.jobs() if job["job"] != build["job"]} == {"skipped: build CANCELLED"}
    assert_rebuilt_equals_live(hub.spool)


def test_a_rebuild_of_a_failed_job_with_downstream_runs_the_later_stages_on_its_artifacts(hub):
    hub.push(THREE_STAGES)
    build = hub.run("b1")
    test = hub.run("t1", passed=False)
    lint = hub.run("l1")
    hub.emit("rebuild", {"job": test["job"], "downstream": True, "request": "r1"})
    hub.hub.drain()
    request = HubState(hub.spool).request("r1")
    again, deploy = (HubState(hub.spool).job(job_id) for job_id in request["jobs"])
    assert again["rebuild_of"] == test["job"] and again["upstream"] == test["upstream"]
    assert (again["kind"], again["stage"], again["push"], again["sha"]) == ("test", 10, build["job"], build["sha"])
    assert deploy["status"] == "WAITING" and deploy["rebuild_of"] == test["plan"][-1]["job"]
    assert {item["job"] for item in deploy["upstream"]} == {build["job"], lint["job"], again["job"]}
    ran = hub.run("t1")
    assert ran["job"] == again["job"] and ran["rebuild_of"] == test["job"]
    assert hub.run("d1")["job"] == deploy["job"]
    assert_rebuilt_equals_live(hub.spool)


def test_a_rebuild_of_a_passed_job_is_a_new_job_of_the_same_sha_and_kind(hub):
    hub.push(["build"])
    build = hub.run("b1")
    hub.emit("rebuild", {"job": build["job"]})
    hub.hub.drain()
    again = hub.run("b1")
    assert again["job"] != build["job"] and again["rebuild_of"] == build["job"]
    assert {key: again[key] for key in ("repo", "branch", "sha", "kind", "params", "push", "stage", "upstream")} == \
        {key: build[key] for key in ("repo", "branch", "sha", "kind", "params", "push", "stage", "upstream")}
    assert HubState(hub.spool).job(again["job"])["status"] == "PASSED"
    assert_rebuilt_equals_live(hub.spool)


def test_a_rebuild_of_a_running_skipped_or_unknown_job_is_refused_with_the_reason(hub):
    from trivialci.hub import rebuild_job

    hub.push(THREE_STAGES)
    build, state = hub.by_kind()["build"], HubState(hub.spool)
    with pytest.raises(BadInput, match="is STARTING: only a job that is over can be rebuilt"):
        rebuild_job(state, build["job"])
    hub.run("b1", passed=False)
    with pytest.raises(BadInput, match=r"was SKIPPED \(skipped: build FAILED\): rebuild the job it waited for"):
        rebuild_job(state, hub.by_kind()["deploy"]["job"])
    with pytest.raises(BadInput, match="no job 20261125T000000Z-0000a1 in the hub's state"):
        rebuild_job(state, "20261125T000000Z-0000a1")
    hub.emit("rebuild", {"job": "../../etc"})
    hub.hub.drain()
    assert [where for event, where, _ in hub.hub.handled if "-rebuild." in event] == ["failed"]


@pytest.mark.parametrize("field, value", [("stage", -1), ("stage", "10"), ("stage", 10_000), ("upstream", "build"),
                                          ("upstream", [{"job": "../x", "kind": "build"}]),
                                          ("upstream", [{"job": "20261125T000000Z-0000a1", "kind": "../b"}]),
                                          ("plan", [{"job": "20261125T000000Z-0000a1", "kind": "b"}]),
                                          ("rebuild_of", "x"), ("push", 5)])
def test_stage_fields_that_break_their_grammar_refuse_the_status(hub, field, value):
    hub.push(["build"])
    job = hub.jobs()[0]
    hub.emit("work_status", {"job": job["job"], "status": "BUILDING", "attempt": 1, "worker": "b1", field: value})
    hub.hub.drain()
    assert HubState(hub.spool).job(job["job"]).get(field) != value
    assert list((hub.spool / "failed").glob("*/*-work_status.*.json"))


def test_the_worker_fetches_each_upstream_jobs_files_and_says_why_it_cannot(tmp_path):
    from trivialci.store import open_store
    from trivialci.worker.upstream import fetch_upstream

    store_url, target = f"file://{tmp_path / 'store'}", tmp_path / "wd" / "upstream" / "J"
    store = open_store(store_url)
    build = "20261125T000000Z-0000a1"
    store.put_bytes(f"jobs/{build}/job.json", b"{}")
    store.put_bytes(f"jobs/{build}/files/bin/app", b"app")
    store.put_bytes(f"jobs/{build}/files/top.txt", b"top")
    assert fetch_upstream([{"job": build, "kind": "build"}], store_url, target) is None
    assert (target / "build" / "bin" / "app").read_bytes() == b"app" and (target / "build" / "top.txt").exists()

    missing = "20261125T000001Z-0000a2"
    problem = fetch_upstream([{"job": missing, "kind": "lint"}], store_url, target)
    assert problem.startswith(f"the artifacts of lint ({missing}) could not be fetched") and "no record" in problem
    assert "no artifact store" in fetch_upstream([{"job": build, "kind": "build"}], None, target)
    assert fetch_upstream([], None, target) is None and list(target.iterdir()) == []  # the first stage: empty


def test_a_link_left_where_the_upstream_directory_goes_is_removed_never_followed(tmp_path):
    from trivialci.worker.upstream import fetch_upstream

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "keep.txt").write_text("keep")
    target = tmp_path / "wd" / "upstream" / "J"
    target.parent.mkdir(parents=True)
    target.symlink_to(elsewhere)  # an unsandboxed build of an earlier attempt could plant it
    assert fetch_upstream([], None, target) is None
    assert target.is_dir() and not target.is_symlink() and (elsewhere / "keep.txt").read_text() == "keep"


def test_a_start_work_with_a_hostile_upstream_is_refused_before_anything_is_fetched():
    from trivialci.worker import check_start_work

    package = {"job": "20261125T000000Z-0000a1", "repo": "/r", "branch": "main", "sha": "a" * 40, "kind": "test",
               "attempt": 1}
    for upstream in ([{"job": "20261125T000000Z-0000a2", "kind": "../../etc"}], [{"job": "../x", "kind": "b"}],
                     [{"job": "20261125T000000Z-0000a2", "kind": "b", "path": "/etc"}], {"job": "x"}):
        with pytest.raises(BadInput):
            check_start_work({**package, "upstream": upstream})
    assert check_start_work({**package, "stage": 10})["stage"] == 10


def test_a_forks_pull_request_in_stages_holds_each_later_stage_for_its_own_approval(hub):
    hub.emit("pull_request", {"repo": "/srv/git/app.git", "action": "opened", "number": 7, "branch": "pull/7",
                              "new": "b" * 40, "head_repo": "someone/app", "fork": True, "author": "someone",
                              "kinds": ["00-build", "10-test"]})
    hub.hub.drain()
    jobs = hub.by_kind()
    assert (jobs["build"]["status"], jobs["test"]["status"]) == ("HELD", "WAITING")
    assert jobs["test"]["trusted"] is False
    hub.emit("approve", {"job": jobs["build"]["job"], "sha": "b" * 40, "by": "maintainer"})
    hub.hub.drain()
    hub.run("b1")
    test = hub.by_kind()["test"]
    assert test["status"] == "HELD" and "approval" not in test and hub.offer("t1") is None
    hub.emit("approve", {"job": test["job"], "sha": "b" * 40, "by": "maintainer"})
    hub.hub.drain()
    assert hub.run("t1")["job"] == test["job"]
    assert_rebuilt_equals_live(hub.spool)
