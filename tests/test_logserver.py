"""The worker's log server: real HTTP on 127.0.0.1, logs written by real processes through the build's line copier."""

import http.client
import json
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from conftest import gated_build, release_build, run_cli, wait_for
from test_flow import ci, origin, push_event  # noqa: F401 (fixtures)

from trivialci.web.logserver import LogServer

JOB = "20261125T033000Z-abcdef"
STAMP = re.compile(rb"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z) ")
# A writer: copies its stdin into LOG as the worker's build copier does, then marks the log complete.
WRITER = """
import os, sys
from pathlib import Path
from trivialci.worker.buildlog import LogCopier, ended_marker
log = Path(sys.argv[1])
LogCopier(os.dup(0), log).start().join()
ended_marker(log).write_text("ended\\n")
"""


class Writer:
    """A real process that appends time-stamped lines to a log as the test feeds them."""

    def __init__(self, log: Path):
        self.proc = subprocess.Popen([sys.executable, "-c", WRITER, str(log)], stdin=subprocess.PIPE)

    def write(self, data: bytes) -> None:
        self.proc.stdin.write(data)
        self.proc.stdin.flush()

    def finish(self) -> None:
        self.proc.stdin.close()
        assert self.proc.wait(20) == 0


@pytest.fixture
def logs(tmp_path) -> Path:
    directory = tmp_path / "work" / "logs"
    directory.mkdir(parents=True)
    return directory


@pytest.fixture
def server(logs):
    with LogServer(logs) as running:
        yield running


@pytest.fixture
def writer(logs):
    started = Writer(logs / f"{JOB}.log")
    yield started
    if started.proc.poll() is None:
        started.proc.kill()
        started.proc.wait()


def get(server_url: str, path: str, headers=None):
    """(status, headers, body) of a raw GET: the path is sent exactly as given, never normalised."""
    host, port = server_url.removeprefix("http://").rsplit(":", 1)
    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        connection.request("GET", path, headers=headers or {})
        response = connection.getresponse()
        return response.status, response.headers, response.read()
    finally:
        connection.close()


def follow(server_url: str, path: str):
    host, port = server_url.removeprefix("http://").rsplit(":", 1)
    connection = http.client.HTTPConnection(host, int(port), timeout=10)  # each read has a deadline
    connection.request("GET", path)
    return connection, connection.getresponse()


def finished_log(logs: Path, data: bytes) -> bytes:
    """Write `data` through a real writer process; the complete log's bytes."""
    writer = Writer(logs / f"{JOB}.log")
    writer.write(data)
    writer.finish()
    return (logs / f"{JOB}.log").read_bytes()


def test_each_line_gets_its_utc_time_and_bad_bytes_and_a_last_partial_line_survive(logs):
    before = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(time.time() - 1)).encode()
    text = finished_log(logs, b"one\n\xff\xfe not utf-8\n<script>x</script>\nno newline at the end")
    lines = text.split(b"\n")
    assert lines[-1] == b"" and len(lines) == 5
    stamps = [STAMP.match(line)[1] for line in lines[:-1]]
    assert [line[len(stamp) + 1:] for line, stamp in zip(lines, stamps)] == [
        b"one", "\ufffd\ufffd not utf-8".encode(), b"<script>x</script>", b"no newline at the end"]
    assert stamps == sorted(stamps) and stamps[0] >= before
    text.decode("utf-8")  # always valid UTF-8


def test_offset_and_range_give_the_right_bytes_and_a_complete_log_says_so(logs, server):
    text = finished_log(logs, b"".join(b"line %d\n" % i for i in range(100)))
    status, headers, body = get(server.url, f"/logs/{JOB}")
    assert (status, body, headers["Content-Type"]) == (200, text, "text/plain; charset=utf-8")
    assert headers["X-Log-Complete"] == "1" and headers["X-Content-Type-Options"] == "nosniff"
    assert get(server.url, f"/logs/{JOB}?offset=100")[2] == text[100:]
    assert get(server.url, f"/logs/{JOB}?offset={len(text) + 5}")[:3:2] == (200, b"")
    status, headers, body = get(server.url, f"/logs/{JOB}", {"Range": "bytes=200-"})
    assert (status, body, headers["Content-Range"]) == (206, text[200:], f"bytes 200-{len(text) - 1}/{len(text)}")
    status, headers, body = get(server.url, f"/logs/{JOB}", {"Range": "bytes=10-19"})
    assert (status, body, headers["Content-Range"]) == (206, text[10:20], f"bytes 10-19/{len(text)}")
    assert get(server.url, f"/logs/{JOB}", {"Range": f"bytes={len(text)}-"})[0] == 416


def test_follow_streams_each_line_as_it_is_written_until_the_job_ends(logs, server, writer):
    writer.write(b"first\n")
    wait_for(lambda: (logs / f"{JOB}.log").exists() and (logs / f"{JOB}.log").stat().st_size, message="the log")
    connection, response = follow(server.url, f"/logs/{JOB}?follow=1")
    try:
        assert response.status == 200 and response.headers["Transfer-Encoding"] == "chunked"
        assert "X-Log-Complete" not in response.headers
        seen = [response.readline()]
        for number in range(10):
            writer.write(b"line %d\n" % number)
            seen.append(response.readline())  # arrives while the writer is still running
            assert seen[-1].endswith(b" line %d\n" % number) and writer.proc.poll() is None
        writer.finish()
        assert response.read() == b"", "the stream ends when the job has ended"
    finally:
        connection.close()
    stamps = [STAMP.match(line)[1] for line in seen]
    assert stamps == sorted(stamps) and seen[0].endswith(b" first\n")


def test_follow_from_an_offset_of_a_finished_log_returns_the_rest_and_ends(logs, server):
    text = finished_log(logs, b"a\nb\nc\n")
    connection, response = follow(server.url, f"/logs/{JOB}?follow=1&offset=10")
    try:
        assert response.read() == text[10:] and response.headers["X-Log-Complete"] == "1"
    finally:
        connection.close()


@pytest.mark.parametrize("path", [
    "/logs/../../etc/passwd", "/logs/%2e%2e%2fsecret.txt", "/logs/%2e%2e/%2e%2e/secret.txt", "/logs/..%2fsecret.txt",
    f"/logs/{JOB}/../../secret.txt", f"/logs/{JOB[:8]}/{JOB[9:]}", "/logs//etc/passwd", "/logs/%2Fetc%2Fpasswd",
    "/etc/passwd", "/secret.txt", "/logs/", "/logs/secret", f"/logs/{JOB}.log", f"/logs/{JOB}%00",
    "http://127.0.0.1/etc/passwd"])
def test_nothing_but_a_job_log_is_served(logs, server, path):
    (logs.parent / "secret.txt").write_text("SECRET\n")
    (logs / "secret.log").write_text("SECRET\n")
    finished_log(logs, b"the log\n")
    status, _, body = get(server.url, path)
    assert status == 404 and b"SECRET" not in body and b"root:" not in body and b"the log" not in body


def test_the_page_follows_the_log_as_text_and_never_embeds_it(logs, server):
    finished_log(logs, b"<script>alert(1)</script>\n")
    status, headers, page = get(server.url, f"/logs/{JOB}.html")
    assert status == 200 and headers["Content-Type"] == "text/html; charset=utf-8"
    assert b"alert(1)" not in page, "the page fetches the log; it never carries it"
    nonce = re.search(r"script-src 'nonce-([\w-]+)'", headers["Content-Security-Policy"])[1]
    assert f'<script nonce="{nonce}">'.encode() in page and page.count(b"<script") == 1
    assert "default-src 'none'" in headers["Content-Security-Policy"] and b"src=" not in page
    assert b"createTextNode" in page and b"innerHTML" not in page and b"?offset=" in page
    assert get(server.url, f"/logs/{JOB}")[2].endswith(b" <script>alert(1)</script>\n"), "served as text/plain"


def test_a_log_that_is_gone_is_a_helpful_404_or_a_redirect_to_the_hub(logs, server):
    status, _, body = get(server.url, f"/logs/{JOB}")
    assert status == 404 and f"trivialci history log {JOB}".encode() in body
    with LogServer(logs, hub_ui="http://hub.example:8080/") as redirecting:
        status, headers, _ = get(redirecting.url, f"/logs/{JOB}.html")
    assert status == 302 and headers["Location"] == f"http://hub.example:8080/jobs/{JOB}"


def test_it_binds_to_127_0_0_1_by_default_and_stopping_closes_the_port(logs):
    with LogServer(logs) as running:
        assert running.httpd.server_address[0] == "127.0.0.1" and running.url.startswith("http://127.0.0.1:")
        url = running.url
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(f"{url}/logs/{JOB}", timeout=5)


def test_stopping_ends_a_follower_of_a_log_that_never_completes(logs):
    (logs / f"{JOB}.log").write_bytes(b"2026-11-25T03:30:01.123Z still running\n")
    running = LogServer(logs).start()
    connection, response = follow(running.url, f"/logs/{JOB}?follow=1")
    try:
        assert response.readline().endswith(b"still running\n")
        running.stop()  # joins the follower's thread: the fixture that checks threads would see it otherwise
        assert response.read() == b""
    finally:
        connection.close()


def test_stopping_does_not_wait_for_an_idle_client(logs):
    running = LogServer(logs).start()
    host, port = running.url.removeprefix("http://").rsplit(":", 1)
    idle = http.client.HTTPConnection(host, int(port), timeout=10)
    idle.connect()  # connected, never sends a request
    try:
        started = time.monotonic()
        running.stop()
        assert time.monotonic() - started < 5
    finally:
        idle.close()


def test_a_worker_advertises_its_log_url_which_answers_and_goes_away_with_it(tmp_path, start_node):
    spool, workdir = tmp_path / "spool", tmp_path / "wd"
    (workdir / "logs").mkdir(parents=True)
    (workdir / "logs" / f"{JOB}.log").write_bytes(b"2026-11-25T03:30:01.123Z hello from the worker\n")
    worker = start_node("worker", "--spool", spool, "--name", "w1", "--workdir", workdir, "--heartbeat", "0.2")
    beat = wait_for(lambda: _beat(spool / "workers" / "w1" / "worker.json"), message="worker.json")
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+", beat["log_url"])
    assert get(beat["log_url"], f"/logs/{JOB}")[2].endswith(b"hello from the worker\n")
    assert worker.stop() == 0
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(f"{beat['log_url']}/logs/{JOB}", timeout=5)


def test_log_listen_off_serves_nothing_and_a_bad_address_is_one_line(tmp_path, start_node):
    spool = tmp_path / "spool"
    start_node("worker", "--spool", spool, "--name", "w2", "--workdir", tmp_path / "wd", "--log-listen", "off")
    beat = wait_for(lambda: _beat(spool / "workers" / "w2" / "worker.json"), message="worker.json")
    assert "log_url" not in beat
    refused = run_cli("worker", "--spool", spool, "--name", "w3", "--workdir", tmp_path / "wd3",
                      "--log-listen", "localhost", "--drain")
    assert refused.returncode != 0 and "--log-listen" in refused.stderr and len(refused.stderr.splitlines()) == 1


def _beat(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def test_the_hubs_job_view_links_to_the_live_log_which_follows_the_build(ci, origin, tmp_path):  # noqa: F811
    sha = origin.commit("main", {"build": gated_build(before="echo first\n", after="echo second\n")})
    push_event(ci["spool"], origin, "main", sha)
    job = wait_for(lambda: _building(ci["spool"]), timeout=60, message="a BUILDING job with a log_url")
    assert re.fullmatch(rf"http://127\.0\.0\.1:\d+/logs/{job['job']}", job["log_url"])
    base, path = job["log_url"].split("/logs/")
    connection, response = follow(base, f"/logs/{path}?follow=1")
    try:
        assert response.readline().endswith(b" first\n")
        release_build(tmp_path / "ciwork" / job["worker"], job["job"])
        assert response.readline().endswith(b" second\n")
        assert response.read() == b"", "the stream ends with the job"
    finally:
        connection.close()
    record = wait_for(lambda: _stored(ci["store"], job["job"]), timeout=60, message="the job record")
    assert record["status"] == "PASSED"
    assert STAMP.match((ci["store"] / "jobs" / job["job"] / "log.txt").read_bytes())


def _building(spool: Path) -> dict | None:
    for path in (spool / "state" / "jobs").glob("*.json"):
        job = _beat(path)
        if job and job.get("status") == "BUILDING" and job.get("log_url"):
            return job
    return None


def _stored(store: Path, job: str) -> dict | None:
    return _beat(store / "jobs" / job / "job.json")
