"""Hostile clients and hostile files against both HTTP servers: the hub's web UI and the worker's log server.

Each test is an attack a review reproduced on a running CI, run here against
the real servers on 127.0.0.1 (in this process, so that their descriptors,
threads and allocations can be counted), and, where the harm is to the hub
itself, against a real `trivialci hub` process. Tests marked `served` run once
per server: a file is served by the UI from the artifact store
(/jobs/JOB/log) and by the log server from WORKDIR/logs (/logs/JOB).
"""

import http.client
import json
import os
import resource
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import tracemalloc
from pathlib import Path

import pytest
from conftest import run_cli, wait_for, write_script
from test_flow import origin  # noqa: F401 (a fixture)

from trivialci.web.logserver import LogServer
from trivialci.web.ui import WebUI
from trivialci.store import open_store

JOB = "20261125T033000Z-abcdef"
OTHER = "20261125T033001Z-fedcba"
SECRET = b"s3cr3t-aws-key"


class Served:
    """One running server and the one file it serves: `put(data)` writes it, `path` asks for it."""

    def __init__(self, kind: str, root: Path):
        self.kind, self.root = kind, root
        if kind == "ui":
            self.spool, self.store = root / "spool", root / "store"
            (self.spool / "state" / "jobs").mkdir(parents=True)
            self.file, self.path = self.store / "jobs" / JOB / "log.txt", f"/jobs/{JOB}/log"
            self.running = WebUI(self.spool, open_store(f"file://{self.store}"), "127.0.0.1", 0)
            self.httpd, self.url = self.running.server, self.running.url.rstrip("/")
        else:
            self.logs = root / "work" / "logs"
            self.logs.mkdir(parents=True)
            self.file, self.path = self.logs / f"{JOB}.log", f"/logs/{JOB}"
            self.running = LogServer(self.logs).start()
            self.httpd, self.url = self.running.httpd, self.running.url
        self.port = self.httpd.server_address[1]

    def put(self, data: bytes) -> bytes:
        self.file.parent.mkdir(parents=True, exist_ok=True)
        self.file.write_bytes(data)
        if self.kind == "logs":
            self.file.with_suffix(".ended").write_text("ended\n")
        return data

    def stop(self) -> None:
        self.running.close() if self.kind == "ui" else self.running.stop()


@pytest.fixture(params=["ui", "logs"])
def served(request, tmp_path):
    running = Served(request.param, tmp_path)
    yield running
    running.stop()


def get(port: int, path: str, headers=None, method="GET"):
    """(status, headers, body) of one request sent exactly as written."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request(method, path, headers=headers or {})
        response = connection.getresponse()
        return response.status, response.headers, response.read()
    finally:
        connection.close()


def raw_connection(port: int, timeout: float = 10) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=timeout)


def closed_by_server(sock: socket.socket, within: float) -> bool:
    """Whether the server closes `sock` within `within` seconds (what it sends meanwhile is read and dropped)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            if sock.recv(65536) == b"":
                return True
        except socket.timeout:
            return False
        except ConnectionResetError:
            return True
    return False


def quiet_threads(baseline: int) -> bool:
    return threading.active_count() <= baseline


def open_descriptors() -> int:
    return len(os.listdir("/proc/self/fd"))


# --- 1 and 8: files that are links or FIFOs ---------------------------------

@pytest.fixture
def ui(tmp_path):
    spool, store = tmp_path / "spool", tmp_path / "store"
    for folder in ("state/jobs", "state/workers", "workers", "done", "failed"):
        (spool / folder).mkdir(parents=True)
    running = WebUI(spool, open_store(f"file://{store}"), "127.0.0.1", 0)
    yield {"spool": spool, "store": store, "port": running.server.server_address[1], "server": running}
    running.close()


def job_record(job: str, **fields) -> str:
    return json.dumps({"job": job, "branch": "main", "sha": "a" * 40, "kind": "build", "status": "PASSED",
                       "queued": "2026-11-25T03:30:00.000Z", **fields})


def secret_json(tmp_path: Path, job: str) -> Path:
    """A JSON file outside the spool that looks like a record: credentials the UI must never show."""
    secret = tmp_path / "credentials.json"
    secret.write_text(json.dumps({"job": job, "branch": SECRET.decode(), "status": "PASSED", "event": SECRET.decode(),
                                  "name": "w1", "kind": SECRET.decode()}))
    return secret


def test_a_link_in_state_jobs_is_not_followed_by_the_ui(ui, tmp_path):
    (ui["spool"] / "state" / "jobs" / f"{JOB}.json").write_text(job_record(JOB))
    (ui["spool"] / "state" / "jobs" / f"{OTHER}.json").symlink_to(secret_json(tmp_path, OTHER))
    for path in ("/", "/index.json", f"/jobs/{OTHER}", f"/jobs/{OTHER}.json"):
        status, _, body = get(ui["port"], path)
        assert SECRET not in body, (path, status)
    assert b"PASSED" not in get(ui["port"], f"/badge/{SECRET.decode()}.svg")[2], "the linked record's status"
    assert JOB.encode() in get(ui["port"], "/")[2], "the real record is still shown"


def test_a_linked_state_jobs_directory_is_not_followed(ui, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / f"{OTHER}.json").write_bytes(secret_json(tmp_path, OTHER).read_bytes())
    (ui["spool"] / "state" / "jobs").rmdir()
    (ui["spool"] / "state" / "jobs").symlink_to(elsewhere)
    for path in ("/index.json", f"/jobs/{OTHER}.json"):
        assert SECRET not in get(ui["port"], path)[2], path


def test_a_fifo_as_a_heartbeat_or_state_file_does_not_hang_the_ui(ui):
    (ui["spool"] / "workers" / "w1").mkdir()
    os.mkfifo(ui["spool"] / "workers" / "w1" / "worker.json")
    os.mkfifo(ui["spool"] / "state" / "workers" / "w2.json")
    os.mkfifo(ui["spool"] / "state" / "jobs" / f"{JOB}.json")
    for path in ("/workers.json", "/index.json", f"/jobs/{JOB}.json", "/queue.json"):
        status, _, body = get(ui["port"], path)  # http.client gives up after 10 s: a hung page fails here
        assert status in (200, 404), (path, status)
    assert [w["name"] for w in json.loads(get(ui["port"], "/workers.json")[2])["workers"]] == ["w1"]


def test_links_in_done_are_not_followed_by_the_events_page(ui, tmp_path):
    day = time.strftime("%Y-%m-%d", time.gmtime())
    folder = ui["spool"] / "done" / day
    folder.mkdir()
    (folder / "000001.000001-x.result.json").symlink_to(secret_json(tmp_path, OTHER))
    (tmp_path / "shadow").write_bytes(SECRET + b"\n")
    (folder / "000002.000002-y.result.json").write_text(json.dumps({"event": "y.json", "log": "000002.000002-y.log"}))
    (folder / "000002.000002-y.log").symlink_to(tmp_path / "shadow")
    status, _, body = get(ui["port"], "/events.json")
    assert status == 200 and SECRET not in body
    assert [e["log"] for e in json.loads(body)["events"] if e["event"] == "y.json"] == [None], "a linked .log"
    status, _, body = get(ui["port"], f"/events/log/done/{day}/000002.000002-y.log")
    assert status == 404 and SECRET not in body


def test_the_log_server_never_serves_what_a_linked_log_points_to(tmp_path):
    logs = tmp_path / "work" / "logs"
    logs.mkdir(parents=True)
    (tmp_path / "shadow").write_bytes(b"root:" + SECRET + b":19000:0:99999:7:::\n")
    (logs / f"{JOB}.log").symlink_to(tmp_path / "shadow")  # a build replaced its log with a link
    os.mkfifo(logs / f"{OTHER}.log")
    with LogServer(logs) as running:
        port = running.httpd.server_address[1]
        for path in (f"/logs/{JOB}", f"/logs/{JOB}?follow=1", f"/logs/{JOB}.html", f"/logs/{OTHER}",
                     f"/logs/{OTHER}?follow=1"):
            status, _, body = get(port, path)
            assert SECRET not in body and status != 200 or path.endswith(".html"), (path, status)


# --- 2: memory -------------------------------------------------------------

@pytest.mark.parametrize("path", ["stored log", "artifact", "event log", "live log"])
def test_a_large_file_is_sent_in_bounded_memory(tmp_path, path):
    size = 48 << 20
    spool, store, logs = tmp_path / "spool", tmp_path / "store", tmp_path / "logs"
    day = time.strftime("%Y-%m-%d", time.gmtime())
    files = {"stored log": (store / "jobs" / JOB / "log.txt", f"/jobs/{JOB}/log"),
             "artifact": (store / "jobs" / JOB / "files" / "big.bin", f"/jobs/{JOB}/files/big.bin"),
             "event log": (spool / "done" / day / "000001.000001-x.log", f"/events/log/done/{day}/000001.000001-x.log"),
             "live log": (logs / f"{JOB}.log", f"/logs/{JOB}")}
    file, url_path = files[path]
    file.parent.mkdir(parents=True)
    with open(file, "wb") as out:
        out.truncate(size)  # sparse: read at memory speed, no disk used
    (spool / "state").mkdir(parents=True, exist_ok=True)
    running = LogServer(logs).start() if path == "live log" else WebUI(spool, open_store(f"file://{store}"))
    port = (running.httpd if path == "live log" else running.server).server_address[1]
    tracemalloc.start()
    try:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        connection.request("GET", url_path)
        response = connection.getresponse()
        received = 0
        while chunk := response.read(1 << 16):
            received += len(chunk)
        connection.close()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
        running.stop() if path == "live log" else running.close()
    assert (response.status, received) == (200, size)
    assert peak < 8 << 20, f"{peak >> 20} MiB allocated at the peak to send {size >> 20} MiB"


# --- 3: descriptors and timeouts -------------------------------------------

def test_idle_connections_beyond_the_limit_take_no_more_descriptors_and_a_request_still_gets_in(served):
    served.put(b"the log\n")
    before, threads = open_descriptors(), threading.active_count()
    idle = [raw_connection(served.port) for _ in range(300)]
    try:
        status, _, body = get(served.port, served.path)
        assert (status, body) == (200, b"the log\n")
        server_side = open_descriptors() - before - len(idle)
        assert server_side <= 70, f"{server_side} descriptors for 300 idle connections"
        assert threading.active_count() - threads <= 70
    finally:
        for sock in idle:
            sock.close()


def test_a_client_that_never_completes_its_request_head_is_dropped(served):
    served.httpd.head_timeout = 1.0
    with raw_connection(served.port) as slow:
        slow.sendall(b"GET " + served.path.encode() + b" HTTP/1.1\r\n")
        dropped = False
        for _ in range(40):  # a byte every 0.1 s: each read is quick, the head never ends
            try:
                slow.sendall(b"X")
            except (BrokenPipeError, ConnectionResetError):
                dropped = True
                break
            if closed_by_server(slow, 0.1):
                dropped = True
                break
        assert dropped, "still connected after 4 s with a head timeout of 1 s"


def test_an_idle_keep_alive_connection_is_dropped(served):
    served.put(b"the log\n")
    served.httpd.idle_timeout = 1.0
    with raw_connection(served.port) as client:
        client.sendall(f"GET {served.path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
        response = http.client.HTTPResponse(client)
        response.begin()
        assert response.read() == b"the log\n" and not response.will_close
        assert closed_by_server(client, 4.0), "an idle keep-alive connection outlived the idle timeout"


def test_a_connection_that_says_nothing_is_dropped(served):
    served.httpd.head_timeout = 1.0
    with raw_connection(served.port) as silent:
        assert closed_by_server(silent, 4.0)


# --- 4: clients that go away -----------------------------------------------

def reset_after(port: int, request: bytes, read: int) -> None:
    """Send `request`, read `read` bytes of the answer, then vanish with a RST (SO_LINGER 0)."""
    sock = raw_connection(port)
    sock.sendall(request)
    got = 0
    while got < read:
        got += len(sock.recv(65536))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def test_a_client_that_goes_away_leaves_no_traceback(served, capfd):
    served.put(b"x" * (32 << 20))
    threads = threading.active_count()
    request = f"GET {served.path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode()
    for _ in range(5):
        reset_after(served.port, request, 1 << 16)
    half = raw_connection(served.port)
    half.sendall(b"GET " + served.path.encode() + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # then RST mid-head
    half.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    half.close()
    wait_for(lambda: quiet_threads(threads), message="the server's threads to notice the clients left")
    assert get(served.port, served.path)[0] == 200
    err = capfd.readouterr().err
    assert "Traceback" not in err and len(err.splitlines()) <= 6, err[-2000:]


# --- 5: a GET with a body --------------------------------------------------

class SharedReaderResponse(http.client.HTTPResponse):
    """One of several answers read from one connection: reading it to the end leaves the reader open."""

    def _close_conn(self):
        self.fp = None


def responses(sock: socket.socket, count: int) -> list[tuple[int, bytes]]:
    """Up to `count` answers read from `sock` until it closes."""
    answers, reader = [], sock.makefile("rb")
    for _ in range(count):
        response = SharedReaderResponse(sock)
        response.fp = reader
        try:
            response.begin()
        except (http.client.RemoteDisconnected, ConnectionResetError):
            break
        answers.append((response.status, response.read()))
        if response.will_close:
            break
    return answers


def test_a_get_with_a_body_does_not_smuggle_a_second_request(served):
    text = served.put(b"0123456789" * 10)
    smuggled = f"GET {served.path} HTTP/1.1\r\nHost: 127.0.0.1\r\nRange: bytes=-3\r\n\r\n"
    first = (f"GET {served.path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {len(smuggled)}\r\n\r\n"
             f"{smuggled}").encode()
    second = f"GET {served.path} HTTP/1.1\r\nHost: 127.0.0.1\r\nRange: bytes=0-4\r\nConnection: close\r\n\r\n"
    with raw_connection(served.port) as client:
        client.sendall(first + second.encode())
        answers = responses(client, 3)
    assert (206, text[-3:]) not in answers, f"the body was answered as a request: {answers}"
    assert answers[0] in ((200, text), (400, answers[0][1]), (413, answers[0][1]))
    if answers[0][0] == 200:
        assert answers[1:] == [(206, text[:5])], "the next request is answered as sent"


@pytest.mark.parametrize("headers", ["Content-Length: 99999999", "Transfer-Encoding: chunked",
                                     "Content-Length: 5\r\nContent-Length: 6", "Content-Length: -1"])
def test_a_body_that_cannot_be_skipped_is_refused_and_the_connection_closed(served, headers):
    served.put(b"the log\n")
    request = f"GET {served.path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{headers}\r\n\r\nGET /x HTTP/1.1\r\n\r\n"
    with raw_connection(served.port) as client:
        client.sendall(request.encode())
        answers = responses(client, 3)
    assert len(answers) == 1 and answers[0][0] in (400, 413, 411), answers


# --- 6: Range ---------------------------------------------------------------

RANGES = [  # (Range, status, first, last): the body is text[first:last + 1]; None: the whole text, 200
    ("bytes=5-2", 200, None, None),
    ("bytes=0-0", 206, 0, 0),
    ("bytes=10-19", 206, 10, 19),
    ("bytes=95-", 206, 95, 99),
    ("bytes=95-500", 206, 95, 99),
    ("bytes=-10", 206, 90, 99),
    ("bytes=-500", 206, 0, 99),
    ("BYTES=1-2", 206, 1, 2),
    ("bytes=100-", 416, None, None),
    ("bytes=100-200", 416, None, None),
    ("bytes=-0", 416, None, None),
    ("bytes=99999999999999999999999999-", 416, None, None),
    ("bytes=0-99999999999999999999999999", 206, 0, 99),
    ("bytes=0-1,5-6", 200, None, None),
    ("bytes=x-y", 200, None, None),
    ("bytes=-", 200, None, None),
    ("bytes=", 200, None, None),
    ("items=0-1", 200, None, None),
    ("bytes=1-2-3", 200, None, None),
    ("bytes=+1-2", 200, None, None),
]


@pytest.mark.parametrize("header,status,first,last", RANGES)
def test_range_requests_follow_rfc_9110(served, header, status, first, last):
    text = served.put(bytes(range(100)))
    got, headers, body = get(served.port, served.path, {"Range": header})
    assert got == status, (header, got, headers.get("Content-Range"))
    if status == 206:
        assert body == text[first:last + 1] and headers["Content-Range"] == f"bytes {first}-{last}/100"
        assert headers["Content-Length"] == str(last - first + 1)
    elif status == 416:
        assert headers["Content-Range"] == "bytes */100"
    else:
        assert body == text and "Content-Range" not in headers


def test_if_range_makes_the_range_ignored_and_an_empty_file_has_no_satisfiable_range(served):
    text = served.put(bytes(range(100)))
    status, _, body = get(served.port, served.path, {"Range": "bytes=0-4", "If-Range": '"some-etag"'})
    assert (status, body) == (200, text)
    served.put(b"")
    status, headers, _ = get(served.port, served.path, {"Range": "bytes=0-"})
    assert (status, headers["Content-Range"]) == (416, "bytes */0")
    assert get(served.port, served.path, {"Range": "bytes=-5"})[:3:2] in ((200, b""),)


# --- 7: Host ---------------------------------------------------------------

@pytest.mark.parametrize("host,refused", [("attacker.example", 421), ("attacker.example:8080", 421),
                                          ("localhost.attacker.example", 421), ("127.0.0.1.nip.io", 421),
                                          ("evil\u00e9.example", 400), ("a b", 400), ("localhost:x", 400)])
def test_a_request_for_another_host_is_refused(served, host, refused):
    served.put(b"the log\n")
    status, headers, body = get(served.port, served.path, {"Host": host.encode("utf-8").decode("latin-1")})
    assert status == refused and b"the log" not in body and len(body.splitlines()) == 1, (status, body)
    assert headers["Content-Type"].startswith("text/plain")


@pytest.mark.parametrize("host", ["localhost", "localhost:9", "LOCALHOST.", "127.0.0.1", "127.0.0.1:80", "[::1]",
                                  "[::1]:8080"])
def test_loopback_names_are_served(served, host):
    served.put(b"the log\n")
    assert get(served.port, served.path, {"Host": host})[:3:2] == (200, b"the log\n")


def test_a_request_without_host_is_refused(served):
    served.put(b"the log\n")
    with raw_connection(served.port) as client:
        client.sendall(f"GET {served.path} HTTP/1.1\r\n\r\n".encode())
        answers = responses(client, 2)
    assert answers and answers[0][0] == 400


@pytest.mark.parametrize("kind", ["ui", "logs"])
def test_allowed_names_are_served(tmp_path, kind):
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / f"{JOB}.log").write_text("the log\n")
    running = (WebUI(tmp_path / "spool", None, "127.0.0.1", 0, allow_hosts=["ci.example.org"]) if kind == "ui"
               else LogServer(tmp_path / "logs", allow_hosts=["CI.example.org"]).start())
    port = (running.server if kind == "ui" else running.httpd).server_address[1]
    path = "/queue" if kind == "ui" else f"/logs/{JOB}"
    try:
        assert get(port, path, {"Host": "ci.example.org:443"})[0] == 200
        assert get(port, path, {"Host": "other.example.org"})[0] in (421, 403)
    finally:
        running.close() if kind == "ui" else running.stop()


# --- the hub process --------------------------------------------------------

def low_descriptor_limit(limit: int):
    return lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))


def test_idle_connections_to_the_ui_cannot_starve_the_hubs_loop(tmp_path, pipeline):
    """With 1024 descriptors (a common default) and 1,100 idle connections, the hub still handles its inbox."""
    spool = tmp_path / "spool"
    write_script(pipeline, "hello.py", "print('hello')\n")
    hub = subprocess.Popen([sys.executable, "-m", "trivialci", "hub", "--spool", str(spool), "--pipeline",
                            str(pipeline), "--workdir", str(tmp_path / "wd"), "--ui", "127.0.0.1:0"],
                           stdout=subprocess.DEVNULL, stderr=(tmp_path / "hub.err").open("w"),
                           preexec_fn=low_descriptor_limit(1024))
    idle = []
    try:
        url = wait_for(lambda: _ui_url(spool), message="the hub's web UI")
        port = int(url.rstrip("/").rsplit(":", 1)[1])
        for _ in range(1100):  # one at a time, as fast as the hub takes them, until it takes no more
            try:
                idle.append(socket.create_connection(("127.0.0.1", port), timeout=2))
            except socket.timeout:
                break
        assert run_cli("emit", "hello", "{}", "--spool", spool).returncode == 0
        wait_for(lambda: list((spool / "done").glob("*/*hello*.result.json")), timeout=30,
                 message="the hub to handle an event while 1,100 connections are open to its UI")
        assert not list((spool / "work").iterdir())
    finally:
        for sock in idle:
            sock.close()
        hub.send_signal(signal.SIGTERM)
        hub.wait(30)


def _ui_url(spool: Path):
    try:
        return json.loads((spool / "hub.json").read_text()).get("ui_url")
    except (OSError, ValueError):
        return None


# --- the options ------------------------------------------------------------

def test_hub_allow_host_lets_a_proxys_name_in_and_keeps_others_out(tmp_path, start_node):
    spool = tmp_path / "spool"
    start_node("hub", "--spool", spool, "--workdir", tmp_path / "wd", "--ui", "127.0.0.1:0",
               "--allow-host", "ci.example.org", "--allow-host", "ci-proxy")
    port = int(wait_for(lambda: _ui_url(spool), message="the hub's web UI").rstrip("/").rsplit(":", 1)[1])
    assert get(port, "/queue", {"Host": "ci.example.org"})[0] == 200
    assert get(port, "/queue", {"Host": "ci-proxy:443"})[0] == 200
    status, _, body = get(port, "/queue", {"Host": "rebound.attacker.example"})
    assert status in (421, 403) and b"--allow-host" in body


def test_worker_allow_hosts_from_the_environment(tmp_path, start_node):
    spool, workdir = tmp_path / "spool", tmp_path / "wd"
    (workdir / "logs").mkdir(parents=True)
    (workdir / "logs" / f"{JOB}.log").write_bytes(b"hello\n")
    start_node("worker", "--spool", spool, "--name", "w1", "--workdir", workdir, "--heartbeat", "0.2",
               env={"TRIVIALCI_ALLOW_HOSTS": "build1.example.org, logs.example.org"})
    beat = wait_for(lambda: _json(spool / "workers" / "w1" / "worker.json"), message="worker.json")
    port = int(beat["log_url"].rsplit(":", 1)[1])
    for host in ("build1.example.org", "logs.example.org:8181", "127.0.0.1"):
        assert get(port, f"/logs/{JOB}", {"Host": host})[:3:2] == (200, b"hello\n"), host
    assert get(port, f"/logs/{JOB}", {"Host": "attacker.example"})[0] in (421, 403)


@pytest.mark.parametrize("command", ["hub", "worker"])
def test_a_bad_allow_host_is_one_line(tmp_path, command):
    done = run_cli(command, "--spool", tmp_path / "spool", "--workdir", tmp_path / "wd", "--drain",
                   *(["--ui", "127.0.0.1:0"] if command == "hub" else []), "--allow-host", "evil.example/<x>")
    assert done.returncode != 0 and len(done.stderr.splitlines()) == 1, done.stderr
    assert "--allow-host" in done.stderr and "Traceback" not in done.stderr


def test_up_passes_allow_host_to_its_hub(origin, tmp_path, start_node):  # noqa: F811 (origin is a fixture)
    spool = tmp_path / "spool"
    up = start_node("up", "--repo", origin.bare, "--spool", spool, "--store", f"file://{tmp_path / 'store'}",
                    "--workdir", tmp_path / "ciwork", "--ui", "127.0.0.1:0", "--allow-host", "ci.example.org")
    try:
        port = int(wait_for(lambda: _ui_url(spool), timeout=30, message="up's web UI").rstrip("/").rsplit(":", 1)[1])
        assert get(port, "/queue", {"Host": "ci.example.org"})[0] == 200
        assert get(port, "/queue", {"Host": "attacker.example"})[0] in (421, 403)
    finally:
        assert up.stop(signal.SIGINT, timeout=60) == 0, up.stderr()


def _json(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None
