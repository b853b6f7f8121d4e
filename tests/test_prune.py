"""Retention: `trivialci prune` on aged spools and stores (aged by their names, times and os.utime, never by sleeping)."""

import datetime
import json
import os
import shutil
import time
from pathlib import Path

import pytest
from conftest import run_cli

from trivialci.hub import HubState, RetentionPolicy, prune, prune_due
from trivialci.jobs import new_job_id
from trivialci.spool.layout import hub_dir, worker_dir
from trivialci.store import open_store

DAY = 86400
NOW = time.time()


def day_name(days_ago: float) -> str:
    return datetime.datetime.fromtimestamp(NOW - days_ago * DAY, datetime.timezone.utc).date().isoformat()


def iso(days_ago: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(NOW - days_ago * DAY))


def stored_job(store, days_ago, branch="main", kind="build", status="PASSED", repo="/r", log=b"log\n", files=1):
    """A job in the store as a worker leaves it: files/, log.txt, then job.json; its id."""
    job = new_job_id(NOW - days_ago * DAY - 60)
    for n in range(files):
        store.put_bytes(f"jobs/{job}/files/out{n}.bin", b"x" * 100)
    store.put_bytes(f"jobs/{job}/log.txt", log)
    record = {"job": job, "repo": repo, "branch": branch, "sha": "a" * 40, "kind": kind, "status": status,
              "queued": iso(days_ago + 60 / DAY), "ended": iso(days_ago), "attempt": 1}
    store.put_bytes(f"jobs/{job}/job.json", json.dumps(record).encode())
    return job


def handled(node_root: Path, days_ago: float, event_type: str, payload: dict, where="done", seq=[0]) -> Path:
    """An event as a node records it in done/DAY/ or failed/DAY/ (with its .log and .result.json)."""
    seq[0] += 1
    folder = node_root / where / day_name(days_ago)
    folder.mkdir(parents=True, exist_ok=True)
    stem = f"{seq[0] % 1000000:06d}.{seq[0]:06d}-{event_type}.x{seq[0]}"
    (folder / f"{stem}.json").write_text(json.dumps(payload))
    (folder / f"{stem}.log").write_text("output\n")
    (folder / f"{stem}.result.json").write_text(json.dumps({"status": where}))
    return folder / f"{stem}.json"


def tree(root: Path) -> dict:
    found = {}
    for parent, _, names in os.walk(root):
        for name in names:
            path = Path(parent, name)
            found[str(path.relative_to(root))] = path.read_bytes()
    return found


def prune_cli(spool, store, *extra, env=None):
    return run_cli("prune", "--spool", spool, "--store", store.url, "--keep-days", "30", "--keep-last", "2",
                   *extra, env=env)


@pytest.fixture(params=["directory", "s3"])
def any_store(request, tmp_path):
    if request.param == "s3":
        request.getfixturevalue("s3_env")
        return open_store(f"s3://{request.getfixturevalue('s3_server').new_bucket()}/ci")
    return open_store((tmp_path / "store").as_uri())


@pytest.fixture
def hub_spool(spool):
    hub_dir(spool).create()
    return spool


def policy_cases(store, spool):
    """One job per case of the policy (keep-days 30, keep-last 2): name -> job id."""
    cases = {"old_passed": stored_job(store, 100, "a"), "old_failed": stored_job(store, 90, "a", status="FAILED")}
    cases["recent"] = stored_job(store, 5, "a")  # the newest PASSED of (/r, a, build): old_passed is not
    cases["last_1"], cases["last_2"] = (stored_job(store, d, "a", status="FAILED") for d in (3, 2))
    cases["newest_passed"] = stored_job(store, 200, "b")
    cases["b_failed"] = [stored_job(store, d, "b", status="FAILED") for d in (150, 120, 110)]
    cases["other_kind_last"] = stored_job(store, 300, "a", kind="test", status="FAILED")
    cases["not_final"] = stored_job(store, 400, "a", status="BUILDING")
    cases["queued_in_state"] = stored_job(store, 400, "a", status="CANCELLED")
    HubState.open(spool).apply_status({"job": cases["queued_in_state"], "status": "QUEUED", "repo": "/r",
                                       "branch": "a", "sha": "a" * 40, "kind": "build", "attempt": 2,
                                       "queued": iso(0)})
    return cases


def listed(store) -> list[str]:
    return [line.split()[0] for line in run_cli("history", "list", "--limit", "1000", "--store",
                                                store.url).stdout.splitlines()[1:]]


def test_the_policy_case_by_case(any_store, hub_spool):
    cases = policy_cases(any_store, hub_spool)
    result = prune_cli(hub_spool, any_store)
    assert result.returncode == 0, result.stderr
    gone = {cases["old_passed"], cases["old_failed"], cases["b_failed"][0]}
    kept = {cases[name] for name in ("recent", "last_1", "last_2", "newest_passed", "other_kind_last",
                                     "not_final", "queued_in_state")} | set(cases["b_failed"][1:])
    assert set(any_store.list_children("jobs/")) == kept
    assert set(listed(any_store)) == kept
    for job in gone:
        assert f"removed job {job}" in result.stdout
    assert result.stdout.splitlines()[-1].startswith("freed ")


def test_a_dry_run_prints_what_would_go_and_changes_nothing(tmp_path, hub_spool):
    store = open_store((tmp_path / "store").as_uri())
    cases = policy_cases(store, hub_spool)
    handled(hub_spool, 40, "hello", {})
    before = (tree(tmp_path / "store"), tree(hub_spool))
    result = prune_cli(hub_spool, store, "--dry-run")
    assert result.returncode == 0, result.stderr
    assert (tree(tmp_path / "store"), tree(hub_spool)) == before
    assert f"would remove job {cases['old_passed']}" in result.stdout
    assert f"would remove hub: done/{day_name(40)} (3 files" in result.stdout
    total = result.stdout.splitlines()[-1]
    assert total.startswith("would free ") and "3 jobs, 1 day folders" in total
    assert int(total.split()[2]) > 3 * 300


def test_day_folders_go_after_their_days_and_failed_is_kept_longer(tmp_path, hub_spool):
    store = open_store((tmp_path / "store").as_uri())
    hub, worker = hub_dir(hub_spool).root, worker_dir(hub_spool, "w1")
    worker.create()
    old = [handled(hub, 31, "hello", {}), handled(worker.root, 45, "start_work", {}),
           handled(worker.root, 95, "x", {}, where="failed"), handled(hub, 91, "x", {}, where="failed")]
    young = [handled(hub, 29, "hello", {}), handled(worker.root, 0, "start_work", {}),
             handled(hub, 60, "x", {}, where="failed"), handled(hub, 1.5, "hello", {})]
    ticks = [handled(hub, d, "tick", {}) for d in (2.5, 10)]
    fresh_ticks = [handled(hub, 0, "tick", {}), handled(hub, 0.5, "tick", {})]
    untouched = []
    for where in ("inbox", "work", "tmp"):
        path = hub / where / "hello.old.json"
        path.write_text("{}")
        os.utime(path, (NOW - 100 * DAY, NOW - 100 * DAY))
        untouched.append(path)
    result = prune_cli(hub_spool, store)
    assert result.returncode == 0, result.stderr
    assert [p.exists() for p in old] == [False] * 4
    assert all(p.exists() for p in young + fresh_ticks + untouched)
    assert not any(p.exists() or p.with_suffix(".log").exists() for p in ticks)
    assert f"removed w1: done/{day_name(45)}" in result.stdout


def test_tick_asks_for_a_prune_once_a_day(hub_spool):
    state = HubState.open(hub_spool)
    assert prune_due(state, NOW) and not prune_due(state, NOW) and not prune_due(state, NOW + 1)
    assert prune_due(state, NOW + DAY)


def test_the_shipped_pipeline_prunes_on_a_prune_event(tmp_path, hub_spool):
    store = open_store((tmp_path / "store").as_uri())
    old = stored_job(store, 100, "a", status="FAILED")
    for n in range(20):  # KEEP_LAST newer jobs of its branch
        stored_job(store, 1 + n / 10, "a", files=0)
    handled(hub_spool, 40, "hello", {})
    run_cli("emit", "prune", "{}", "--spool", hub_spool)
    result = run_cli("hub", "--spool", hub_spool, "--store", store.url, "--drain", "--workdir", tmp_path / "wd")
    assert result.returncode == 0, result.stderr
    assert old not in store.list_children("jobs/") and len(store.list_children("jobs/")) == 20
    assert not (hub_spool / "done" / day_name(40)).exists()
    log = next((hub_spool / "done").glob("*/*-prune.*.log")).read_text()
    assert f"removed job {old}" in log


def test_errors_are_one_line_and_a_nonzero_exit(tmp_path):
    result = run_cli("prune", "--spool", tmp_path / "nothing", "--store", tmp_path / "store")
    assert result.returncode != 0 and len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.stderr


def test_an_s3_prune_removes_jobs_in_batches_not_a_listing_and_a_delete_each(request, hub_spool):
    request.getfixturevalue("s3_env")
    store = open_store(f"s3://{request.getfixturevalue('s3_server').new_bucket()}/ci")
    old = [stored_job(store, 100 + n / 100, "a", status="FAILED", files=2) for n in range(60)]
    sent = []
    store.client.meta.events.register("before-call.s3", lambda model, **_: sent.append(model.name))
    prune(hub_spool, store, RetentionPolicy(keep_days=30, keep_last=2))
    operations = [name for name in sent if name != "GetObject"]
    assert set(store.list_children("jobs/")) == set(old[:2]), "the two newest stay"
    assert sent.count("GetObject") == 60, "each job.json is read once"
    assert operations == ["ListObjectsV2", "DeleteObjects", "DeleteObjects"], "one listing; job.json of every " \
                                                                            "job, then the other keys of all of them"
