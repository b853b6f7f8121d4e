"""A job whose record, log or files the store refused is UNSTORED, with the reason: never a plain PASSED.

The store here is really read-only (a tmpfs mounted ro: the machine's root may
write anywhere else), or refuses a file's name. The job is seen as UNSTORED
where people look: the worker's report, the hub's job view, `trivialci jobs`,
the web UI and, when the record itself could be written, the store.
"""

import json
import subprocess

import pytest
from conftest import run_cli, wait_for
from test_build_files import JOB, job_of
from test_flow import Origin, hub_jobs, push_event, store_jobs
from test_webui import get_json, start_hub, stop_workers

from trivialci.hub import end_queued
from trivialci.hub.state import HubState
from trivialci.jobs import JobStatus
from trivialci.worker import jobrun

BUILD_OK = "#!/bin/sh\necho built\necho made > \"$TRIVIALCI_ARTIFACTS/out.txt\"\n"


@pytest.fixture
def read_only_store(tmp_path):
    """A directory store on a read-only filesystem (a tmpfs mounted ro), unmounted at the end."""
    store = tmp_path / "store"
    store.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(store)], capture_output=True,
                             text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a read-only tmpfs here: {mounted.stderr.strip()}")
    yield store
    subprocess.run(["umount", "-l", str(store)], check=True)


def test_a_job_the_store_refuses_is_unstored_with_its_verdict_and_the_reason(tmp_path, read_only_store):
    arguments = job_of(tmp_path, BUILD_OK)
    record = jobrun.JobRun(**arguments).run()
    assert record["status"] == "UNSTORED" and record["verdict"] == "PASSED" and record["exit_code"] == 0
    assert "Read-only file system" in record["reason"] and "record could not be written" in record["reason"]
    reported = [json.loads(p.read_text()) for p in sorted((tmp_path / "spool" / "inbox").glob("work_status.*.json"))]
    assert reported[-1]["status"] == "UNSTORED" and reported[-1]["verdict"] == "PASSED"
    assert reported[-1]["reason"] == record["reason"]
    done = [json.loads(p.read_text()) for p in (tmp_path / "spool" / "inbox").glob("work_done.*.json")]
    assert [d["status"] for d in done] == ["UNSTORED"]


def test_a_file_name_the_store_refuses_leaves_an_unstored_record_in_the_store(tmp_path):
    build = "#!/bin/sh\necho out > \"$TRIVIALCI_ARTIFACTS/bad$(printf '\\001')name\"\n"
    record = jobrun.JobRun(**job_of(tmp_path, build)).run()
    stored = json.loads((tmp_path / "store" / "jobs" / JOB / "job.json").read_text())
    assert stored == record
    assert stored["status"] == "UNSTORED" and stored["verdict"] == "PASSED"
    assert "were not stored" in stored["reason"] and "control character" in stored["reason"]


def test_a_read_only_store_shows_unstored_in_the_hubs_view_trivialci_jobs_and_the_ui(tmp_path, start_node,
                                                                                     read_only_store):
    origin = Origin(tmp_path)
    ci = start_hub(start_node, tmp_path, "--tick", "0.3")
    try:
        sha = origin.commit("main", {"build": BUILD_OK})
        assert push_event(ci["spool"], origin, "main", sha).returncode == 0
        [job] = wait_for(lambda: [j for j in hub_jobs(ci["spool"]).values() if JobStatus(j["status"]).final],
                         timeout=90, message="the job to end")
        assert job["status"] == "UNSTORED" and job["verdict"] == "PASSED", job
        assert "Read-only file system" in job["reason"]

        shown = run_cli("jobs", "--spool", ci["spool"])
        recent = shown.stdout.split("recent:")[1].split("workers:")[0]
        [line] = [line for line in recent.splitlines() if job["job"] in line]
        assert "UNSTORED" in line and "(PASSED, not stored)" in line and "Read-only file system" in line, shown.stdout

        page = get_json(ci["url"], f"/jobs/{job['job']}.json")
        assert page["job"]["status"] == "UNSTORED" and "Read-only" in page["job"]["reason"]
        listed = get_json(ci["url"], "/index.json")
        assert [j["status"] for j in listed["jobs"]] == ["UNSTORED"]
        assert store_jobs(read_only_store) == {}
    finally:
        ci["hub"].stop()
        stop_workers(ci["spool"])


def test_a_job_ended_while_queued_whose_record_the_store_refuses_is_unstored(spool, monkeypatch, read_only_store):
    from trivialci.spool.layout import hub_dir

    hub_dir(spool).create()
    monkeypatch.setenv("TRIVIALCI_STORE", f"file://{read_only_store}")
    state = HubState(spool)
    job = state.apply_status({"job": JOB, "status": "QUEUED", "repo": "/r", "branch": "main", "sha": "a" * 40,
                              "kind": "build", "attempt": 1, "queued": "2026-11-25T00:00:00.000Z"})
    ended = end_queued(state, job, JobStatus.SUPERSEDED, "a newer push of main")
    assert ended["status"] == "UNSTORED" and ended["verdict"] == "SUPERSEDED"
    assert ended["reason"].startswith("a newer push of main; its record could not be written")
    assert state.job(JOB)["status"] == "UNSTORED" and state.queued("build") == []
