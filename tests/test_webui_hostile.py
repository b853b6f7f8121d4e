"""Hostile records, logs and queries against the new pages: shown as text, never a 500, never a fetch elsewhere."""

import http.client
import http.server
import json
import re
import threading

import pytest
from test_web_attacks import JOB, OTHER, get, job_record, ui  # noqa: F401 (a fixture)

ODD_VALUES = {"status": "<b>NOPE</b>", "run_time": "forever", "queued": 12, "subject": ["<i>list</i>"],
              "author": {"name": "x"}, "stage": "<s>", "upstream": "not a list", "sha": None, "branch": 7,
              "exit_code": "x", "rebuild_of": "../../etc", "reason": {"a": 1}}
LOG_LINE = b"\x1b[1;31m<img src=x onerror=alert(1)>\x1b[0m \x1b]8;;http://evil\x07link\x1b]8;;\x07 \x1b[2J\n"
PATHS = ["/", "/branches", "/branch?name=7", "/branch?name=%3Cb%3E", "/queue", "/events?all=1", f"/jobs/{JOB}",
         f"/jobs/{JOB}?from=last", f"/jobs/{JOB}?from=99999999999999999999&line=-1", f"/jobs/{JOB}?from=x&line=y",
         f"/jobs/{JOB}/log.part?from=5&line=999999999999", "/index.json", "/branches.json", f"/jobs/{JOB}.json"]


def test_records_of_any_shape_are_drawn_as_text_and_never_fail(ui):
    (ui["spool"] / "state" / "jobs" / f"{JOB}.json").write_text(job_record(JOB, **ODD_VALUES))
    (ui["spool"] / "state" / "jobs" / f"{OTHER}.json").write_text(job_record(OTHER, subject="<script>x</script>"))
    for path in PATHS:
        status, _, body = get(ui["port"], path)
        assert status == 200, (path, body[:300])
        assert path.endswith(".json") or b"<b>NOPE" not in body and b"<script>x" not in body and b"<i>list" not in body, path
    assert b"&lt;script&gt;x&lt;/script&gt;" in get(ui["port"], "/")[2]


def test_the_part_a_page_refreshes_is_its_main_block_alone(ui):
    (ui["spool"] / "state" / "jobs" / f"{JOB}.json").write_text(job_record(JOB, subject="one subject"))
    status, headers, body = get(ui["port"], "/", {"X-Part": "main"})
    assert status == 200 and b"one subject" in body and b"<html" not in body and b"<script" not in body
    assert "nonce-" in headers["Content-Security-Policy"]


def test_a_stored_log_is_paged_with_escapes_removed_and_markup_escaped(ui):
    (ui["spool"] / "state" / "jobs" / f"{JOB}.json").write_text(job_record(JOB))
    log = ui["store"] / "jobs" / JOB / "log.txt"
    log.parent.mkdir(parents=True)
    log.write_bytes(LOG_LINE * 20000)  # 1.3 MB: many pages
    status, _, body = get(ui["port"], f"/jobs/{JOB}")
    assert status == 200 and b"<img" not in body and b"\x1b" not in body and b"evil" not in body
    assert b'<span class="b f1">&lt;img src=x onerror=alert(1)&gt;</span>' in body
    assert b'id="L1"' in body and len(body) < 400_000, "one page of the log, not all of it"
    offset, line = map(int, re.search(rb'\?from=(\d+)&amp;line=(\d+)', body).groups())
    assert offset == (line - 1) * len(LOG_LINE) and body.count(b'<div class="l"') == line - 1
    second = get(ui["port"], f"/jobs/{JOB}?from={offset}&line={line}")[2]
    assert re.search(rb'<div class="l" id="L(\d+)"', second).group(1) == str(line).encode(), "numbering goes on"
    last = get(ui["port"], f"/jobs/{JOB}?from=last")[2]
    assert b'id="L20000"' in last and b'id="L1"' not in last


class Recorder(http.server.BaseHTTPRequestHandler):
    asked = []

    def do_GET(self):
        Recorder.asked.append(self.path)
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"secret from elsewhere\n")

    def log_message(self, *args):
        pass


@pytest.mark.parametrize("path", ["/admin", f"/logs/{OTHER}", f"/x/logs/{JOB}/../../admin"])
def test_the_ui_asks_a_worker_only_for_that_very_jobs_log(ui, path):
    server = http.server.HTTPServer(("127.0.0.1", 0), Recorder)
    thread = threading.Thread(target=server.serve_forever)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}{path}"
        (ui["spool"] / "state" / "jobs" / f"{JOB}.json").write_text(job_record(JOB, status="BUILDING", log_url=url))
        for asked in (f"/jobs/{JOB}", f"/jobs/{JOB}/log.part?from=0"):
            status, _, body = get(ui["port"], asked)
            assert status == 200 and b"secret from elsewhere" not in body
        assert Recorder.asked == []
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_a_push_with_stages_shows_its_jobs_in_stage_order(ui):
    jobs = ui["spool"] / "state" / "jobs"
    (jobs / f"{JOB}.json").write_text(job_record(JOB, kind="deploy", stage=2, status="QUEUED", subject="staged"))
    (jobs / f"{OTHER}.json").write_text(job_record(OTHER, kind="test", stage=1, status="PASSED", run_time=2.5))
    body = get(ui["port"], "/")[2].decode()
    chips = re.findall(r'<a class="chip"[^>]*>(.*?)</a>', body)
    assert len(chips) == 2 and "staged" in body
    assert [re.sub(r"<[^>]+>", " ", chip).split() for chip in chips] == [["1", "test", "PASSED", "2.5s"],
                                                                         ["2", "deploy", "QUEUED"]]
