"""The example flow end to end with an S3 store: a push becomes a PASSED job in a bucket of a real S3 server.

The hub and the workers it boots reach moto's server through the environment
alone (credentials and TRIVIALCI_S3_ENDPOINT_URL), as they would reach MinIO or AWS:
the workers' uploads land only if pipeline/boot_worker.py hands that environment on.
"""

import json
import os
import signal

import pytest
from conftest import run_cli, wait_for
from test_flow import BUILD_OK, origin, push_event  # noqa: F401 (origin is a fixture)

from trivialci.store import open_store
from trivialci.up import local_worker_pids


@pytest.fixture
def s3_ci(tmp_path, start_node, s3_server, s3_env):
    """A hub on the shipped pipeline storing to s3://BUCKET/ci; it boots its own workers."""
    spool, url = tmp_path / "spool", f"s3://{s3_server.new_bucket()}/ci"
    hub = start_node("hub", "--spool", spool, "--store", url, "--workdir", tmp_path / "ciwork" / "hub",
                     "--tick", "0.3", "--grace", "1", env=s3_env)
    yield {"spool": spool, "url": url, "hub": hub, "store": open_store(url)}
    hub.stop()
    for pid in local_worker_pids(spool):
        os.kill(pid, signal.SIGTERM)
    wait_for(lambda: not local_worker_pids(spool), timeout=30, message="the booted workers to stop")


def bucket_jobs(store) -> dict[str, dict]:
    return {job: json.loads(store.get_bytes(f"jobs/{job}/job.json")) for job in store.list_children("jobs/")
            if store.exists(f"jobs/{job}/job.json")}


def test_a_push_becomes_passed_in_the_bucket_with_log_and_files(s3_ci, origin):  # noqa: F811
    sha = origin.commit("main", {"build": BUILD_OK})
    assert push_event(s3_ci["spool"], origin, "main", sha).returncode == 0

    store = s3_ci["store"]
    [(job_id, job)] = wait_for(lambda: bucket_jobs(store), timeout=60, message="the job record in the bucket").items()
    assert job["status"] == "PASSED" and job["sha"] == sha and job["files"] == ["out.txt"], job
    assert store.list_keys(f"jobs/{job_id}") == [f"jobs/{job_id}/{name}" for name in
                                                  ("files/out.txt", "job.json", "log.txt")]
    assert f"building main at {sha}" in store.get_bytes(f"jobs/{job_id}/log.txt").decode()
    assert store.get_bytes(f"jobs/{job_id}/files/out.txt") == b"made\n"

    history = run_cli("history", "list", "--store", s3_ci["url"])
    assert history.returncode == 0, history.stderr
    assert job_id in history.stdout and "PASSED" in history.stdout
