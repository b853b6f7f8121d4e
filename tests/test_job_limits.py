"""Bounded jobs: a build that prints without end is stored cut, and artifacts over the limit are refused."""

import json
import os
import urllib.request

import pytest
from conftest import run_cli
from gitrepo import Origin

from trivialci.errors import BadInput
from trivialci.spool.layout import hub_dir, worker_dir
from trivialci.store import open_store
from trivialci.web.logserver import LogServer
from trivialci.worker import limits

MIB = 1 << 20
JOB = "20261125T000000Z-abcdef"


def run_job(tmp_path, build: str, *worker_options):
    """One start_work handled by a real `trivialci worker --drain` process; (record, store, workdir)."""
    origin = Origin(tmp_path / "repo")
    script = {".trivialci/build": build}
    sha = origin.commit(script)
    os.chmod(origin.work / ".trivialci" / "build", 0o755)
    sha = origin.commit({}, message="executable")  # the mode change
    spool, workdir, store = tmp_path / "spool", tmp_path / "disk", open_store((tmp_path / "store").as_uri())
    hub_dir(spool).create()
    worker_dir(spool, "w1").create()
    package = {"job": JOB, "repo": str(origin.bare), "branch": "main", "sha": sha, "kind": "build", "attempt": 1}
    assert run_cli("emit", "start_work", json.dumps(package), "--spool", spool, "--to", "worker:w1").returncode == 0
    done = run_cli("worker", "--spool", spool, "--name", "w1", "--drain", "--store", store.url, "--workdir", workdir,
                   "--log-listen", "off", *worker_options, timeout=300)
    assert done.returncode == 0, done.stderr
    return json.loads(store.get_bytes(f"jobs/{JOB}/job.json")), store, workdir


def test_a_build_printing_200_mib_is_stored_cut_and_the_disk_holds_no_more_than_the_limit(tmp_path):
    build = "#!/bin/sh\nyes 'a line of output that never ends' | head -c 209715200\necho after the flood >&2\n"
    record, store, workdir = run_job(tmp_path, build, "--max-log-bytes", "5M")
    assert record["status"] == "PASSED" and record["exit_code"] == 0
    assert "its log was cut at 5242880 bytes" in record["reason"]
    on_disk = workdir / "logs" / f"{JOB}.log"
    assert on_disk.stat().st_size <= 5 * MIB
    stored = store.get_bytes(f"jobs/{JOB}/log.txt")
    assert len(stored) <= 5 * MIB and len(stored) > 4 * MIB
    assert b"trivialci: the log was cut here" in stored.splitlines()[-1]
    assert b"after the flood" not in stored
    with LogServer(workdir / "logs", "127.0.0.1", 0) as server:
        served = urllib.request.urlopen(f"{server.url}/logs/{JOB}", timeout=30).read()
    assert served == on_disk.read_bytes() and len(served) <= 5 * MIB


def test_artifacts_over_the_limit_are_refused_with_a_reason_in_the_record_and_the_log(tmp_path):
    build = ('#!/bin/sh\nhead -c 3000000 /dev/zero > "$TRIVIALCI_ARTIFACTS/big.bin"\n'
             'echo small > "$TRIVIALCI_ARTIFACTS/small.txt"\n')
    record, store, _ = run_job(tmp_path, build, "--max-artifact-bytes", "2M")
    assert record["status"] == "PASSED" and record["files"] == []
    assert "artifacts refused: they hold more than 2097152 bytes" in record["reason"]
    assert b"artifacts refused" in store.get_bytes(f"jobs/{JOB}/log.txt")
    assert store.list_keys(f"jobs/{JOB}/files/") == []


def test_artifacts_under_the_limit_go_up(tmp_path):
    build = '#!/bin/sh\necho small > "$TRIVIALCI_ARTIFACTS/small.txt"\n'
    record, store, _ = run_job(tmp_path, build, "--max-artifact-bytes", "2M")
    assert record["files"] == ["small.txt"] and "refused" not in record["reason"]


def test_the_defaults_and_the_size_grammar():
    assert limits.from_environment({}) == (50 * MIB, 1 << 30)
    assert limits.parse_size("4096", "x") == 4096 and limits.parse_size("2k", "x") == 2048
    for bad in ("", "0", "-1", "1T", "1.5M", "lots"):
        with pytest.raises(BadInput, match="write a size in bytes"):
            limits.parse_size(bad, "x")


def test_a_bad_limit_is_one_line_and_a_nonzero_exit(tmp_path):
    result = run_cli("worker", "--spool", tmp_path / "spool", "--name", "w1", "--drain", "--max-log-bytes", "lots")
    assert result.returncode == 2 and "bad --max-log-bytes 'lots'" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
