"""`trivialci history` reads jobs from the artifact store alone, newest first, reading only what it shows.

The commands run as real processes on stores filled through the store's own API.
"""

import json
import re
import subprocess
import sys
import time
from collections import Counter

import pytest
from conftest import run_cli

from trivialci.store.history import list_jobs
from trivialci.store import ArtifactStore, open_store

BRANCHES = ("main", "feature/login")
JOBS = 30


def job_id(number: int) -> str:
    """Ids sort by time; the random-looking tail must not matter to the order."""
    queued = time.gmtime(1795000000 + number * 60)
    return time.strftime("%Y%m%dT%H%M%SZ", queued) + f"-{(number * 7919) % 0xffffff:06x}"


def job_record(number: int) -> dict:
    queued = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(1795000000 + number * 60))
    return {"job": job_id(number), "repo": "/srv/git/app.git", "branch": BRANCHES[number % 3 == 0],
            "sha": f"{number:040x}", "kind": "build", "status": "PASSED" if number % 2 else "FAILED",
            "worker": f"w{number % 4}", "attempt": 1, "queued": queued, "started": queued, "ended": queued,
            "queue_wait": 0.5, "run_time": 42.0 + number, "exit_code": 0 if number % 2 else 1,
            "files": ["app.bin", "reports/junit.xml"], "reason": None}


def put_job(store: ArtifactStore, record: dict, log: bytes | None) -> None:
    if log is not None:
        store.put_bytes(f"jobs/{record['job']}/log.txt", log)
    store.put_bytes(f"jobs/{record['job']}/job.json", json.dumps(record, indent=2).encode())


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> ArtifactStore:
    """30 jobs on two branches; job 0 never wrote a log; job 1's log is not UTF-8."""
    store = open_store(tmp_path_factory.mktemp("history") / "store")
    for number in range(JOBS):
        log = None if number == 0 else b"\xff\xfe not utf-8\n" if number == 1 else f"log of job {number}\n".encode()
        put_job(store, job_record(number), log)
    return store


def newest(numbers) -> list[str]:
    return [job_id(number) for number in sorted(numbers, reverse=True)]


def table(result) -> list[list[str]]:
    """The rows of a `history list` table, split into cells (no cell here holds two spaces)."""
    assert result.returncode == 0, result.stderr
    header, *rows = result.stdout.splitlines()
    assert header.split() == ["JOB", "STATUS", "BRANCH", "SHA", "KIND", "WORKER", "QUEUED", "RUN", "TIME"]
    return [re.split(r" {2,}", row.strip()) for row in rows]


def refusal(result, exit_code: int = 2) -> str:
    """The one line a refused command printed; fails unless it is exactly one line, no traceback."""
    assert result.returncode == exit_code, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got:\n{result.stderr}"
    return lines[0]


def test_list_shows_the_newest_twenty_jobs_first(store):
    rows = table(run_cli("history", "list", "--store", store.url))
    assert [row[0] for row in rows] == newest(range(JOBS))[:20]
    record = job_record(JOBS - 1)
    assert rows[0] == [record["job"], "PASSED", "main", record["sha"][:12], "build", "w1",
                       record["queued"][:10] + " " + record["queued"][11:19], "1m11s"]


def test_limit_and_branch_choose_the_rows(store):
    assert [row[0] for row in table(run_cli("history", "list", "--store", store.url, "--limit", "3"))] == \
        newest(range(JOBS))[:3]
    rows = table(run_cli("history", "list", "--store", store.url, "--branch", "feature/login", "--limit", "100"))
    assert [row[0] for row in rows] == newest(n for n in range(JOBS) if n % 3 == 0)
    assert {row[2] for row in rows} == {"feature/login"}


def test_the_store_may_come_from_the_environment_as_a_plain_path(store):
    result = run_cli("history", "list", "--limit", "1", env={"TRIVIALCI_STORE": str(store.root)})
    assert [row[0] for row in table(result)] == newest(range(JOBS))[:1]


def test_show_prints_the_record_and_json_prints_it_as_stored(store):
    record = job_record(7)
    shown = run_cli("history", "show", record["job"], "--store", store.url)
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert lines[0].split() == ["job", record["job"]]
    assert ["status", "PASSED"] in [line.split() for line in lines]
    assert ["files", "app.bin"] in [line.split() for line in lines] and ["reports/junit.xml"] in [
        line.split() for line in lines]
    as_json = run_cli("history", "show", record["job"], "--store", store.url, "--json")
    assert json.loads(as_json.stdout) == record


def test_log_prints_the_bytes_as_they_were_stored(store):
    for number, expected in ((1, b"\xff\xfe not utf-8\n"), (5, b"log of job 5\n")):
        result = subprocess.run([sys.executable, "-m", "trivialci", "history", "log", job_id(number),
                                 "--store", store.url], capture_output=True, timeout=60)
        assert (result.returncode, result.stdout, result.stderr) == (0, expected, b"")


def test_an_unknown_job_is_refused_with_where_to_look(store):
    line = refusal(run_cli("history", "show", "20991231T000000Z-000000", "--store", store.url))
    assert line == (f"Error: no job 20991231T000000Z-000000 in the artifact store {store.url}: "
                    f"`trivialci history list --store {store.url}` lists the jobs it holds")
    assert "no job 20991231T000000Z-000000" in refusal(
        run_cli("history", "log", "20991231T000000Z-000000", "--store", store.url))


def test_a_job_without_a_log_says_so(store):
    assert "has no log" in refusal(run_cli("history", "log", job_id(0), "--store", store.url))


@pytest.mark.parametrize("job", ["../../etc/passwd", "a/b", "..", "", "x\ny"])
def test_a_job_id_that_is_not_one_name_is_refused(store, job):
    for command in ("show", "log"):
        assert "is not a job id" in refusal(run_cli("history", command, job, "--store", store.url))


def test_no_store_given_is_refused_in_one_line():
    line = refusal(run_cli("history", "list", env={"TRIVIALCI_STORE": ""}))
    assert "no artifact store given" in line and "TRIVIALCI_STORE" in line


def test_a_store_that_is_not_there_is_refused_in_one_line(tmp_path):
    for command in (["list"], ["show", job_id(1)], ["log", job_id(1)]):
        line = refusal(run_cli("history", *command, "--store", tmp_path / "nothing-here"))
        assert line.startswith(f"Error: no artifact store at {tmp_path / 'nothing-here'}: ")
    assert "three slashes" in refusal(run_cli("history", "list", "--store", "file://relative/dir"))


def test_an_s3_bucket_that_is_not_there_is_refused_in_one_line(s3_env):
    for command in (["list"], ["show", job_id(1)], ["log", job_id(1)]):
        line = refusal(run_cli("history", *command, "--store", "s3://no-such-bucket/ci"))
        assert line.startswith("Error: no S3 bucket no-such-bucket for the artifact store s3://no-such-bucket/ci")


def test_an_empty_store_has_no_jobs(tmp_path):
    (tmp_path / "store").mkdir()
    result = run_cli("history", "list", "--store", tmp_path / "store", "--branch", "main")
    assert (result.returncode, result.stdout) == (0, f"no jobs of branch main in {(tmp_path / 'store').as_uri()}\n")


def test_hostile_and_damaged_records_cannot_break_the_table(tmp_path):
    store = open_store(tmp_path / "store")
    put_job(store, {**job_record(1), "branch": "x\x1b[2J\nEVIL ROW", "worker": "w\r"}, b"")
    store.put_bytes(f"jobs/{job_id(2)}/job.json", b"{not json")
    store.put_bytes(f"jobs/{job_id(3)}/job.json", b"[1, 2]")
    store.put_bytes(f"jobs/{job_id(4)}/log.txt", b"a job whose record is not written yet")
    result = run_cli("history", "list", "--store", store.url)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 4 and "\x1b" not in result.stdout and "\r" not in result.stdout
    assert lines[1].split()[:2] == [job_id(3), "UNREADABLE"] and lines[2].split()[:2] == [job_id(2), "UNREADABLE"]
    assert "x\\x1b[2J\\nEVIL ROW" in lines[3] and "w\\r" in lines[3]
    assert "is damaged" in refusal(run_cli("history", "show", job_id(2), "--store", store.url))


class CountingStore(ArtifactStore):
    """Another store, seen through a window that counts what is asked of it."""

    def __init__(self, inner: ArtifactStore):
        self.inner, self.url, self.calls, self.reads = inner, inner.url, Counter(), []

    def get_bytes(self, key):
        self.calls["get_bytes"] += 1
        self.reads.append(key)
        return self.inner.get_bytes(key)

    def list_children(self, prefix):
        self.calls["list_children"] += 1
        return self.inner.list_children(prefix)

    def list_keys(self, prefix):
        self.calls["list_keys"] += 1
        return self.inner.list_keys(prefix)

    def exists(self, key):
        self.calls["exists"] += 1
        return self.inner.exists(key)


@pytest.fixture(scope="module")
def big_store(tmp_path_factory) -> ArtifactStore:
    """2,000 jobs; every 4th on branch "rare". The layout is plain files, so most are written directly (fast)."""
    store = open_store(tmp_path_factory.mktemp("big") / "store")
    put_job(store, job_record(0), None)
    for number in range(1, 2000):
        record = {**job_record(number), "branch": "rare" if number % 4 == 0 else "main"}
        (store.root / "jobs" / record["job"]).mkdir()
        (store.root / "jobs" / record["job"] / "job.json").write_text(json.dumps(record))
    return store


def test_listing_2000_jobs_reads_only_the_records_it_shows(big_store):
    counting = CountingStore(big_store)
    shown = list_jobs(counting, 10)
    assert [job["job"] for job in shown] == newest(range(2000))[:10]
    assert counting.calls == {"list_children": 1, "get_bytes": 10}
    assert counting.reads == [f"jobs/{job}/job.json" for job in newest(range(2000))[:10]]


def test_a_branch_reads_only_as_far_back_as_it_needs(big_store):
    counting = CountingStore(big_store)
    shown = list_jobs(counting, 10, branch="rare")
    assert [job["job"] for job in shown] == newest(n for n in range(1, 2000) if n % 4 == 0)[:10]
    assert counting.calls["get_bytes"] <= 4 * 10 and counting.calls["list_keys"] == 0


def test_the_command_lists_the_newest_of_2000_jobs(big_store):
    rows = table(run_cli("history", "list", "--store", big_store.url, "--limit", "10"))
    assert [row[0] for row in rows] == newest(range(2000))[:10]
