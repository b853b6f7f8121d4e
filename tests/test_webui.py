"""The hub's web UI: a real hub with --ui, real pushes built by the workers it boots, a real headless Chromium.

The browser tests need /usr/bin/chromium and the playwright package (the CI
installs both); without them they are skipped, and the plain-HTTP tests run.
"""

import http.client
import json
import os
import re
import shutil
import signal
import socket
import xml.etree.ElementTree as ElementTree
from pathlib import Path
from urllib.parse import quote, urlsplit

import pytest
from conftest import gated_build, release_build, wait_for
from test_flow import BUILD_FAILS, BUILD_OK, building, origin, push_event, store_jobs  # noqa: F401 (a fixture)

from trivialci.up import local_worker_pids

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
HOSTILE = "feat/<img/src=x/onerror=alert(1)>"
TIMEOUT_MS = 60_000


def live_build() -> str:
    """A build that waits to be released, then writes an artifact: the test sees it QUEUED/BUILDING first."""
    return gated_build(before='echo "building $TRIVIALCI_BRANCH"\n',
                       after='echo released\necho made > "$TRIVIALCI_ARTIFACTS/out.txt"\n')


def start_hub(start_node, tmp_path, *extra):
    spool, store = tmp_path / "spool", tmp_path / "store"
    hub = start_node("hub", "--spool", spool, "--store", f"file://{store}", "--workdir",
                     tmp_path / "ciwork" / "hub", "--grace", "1", "--ui", "127.0.0.1:0", *extra)
    url = wait_for(lambda: _ui_url(spool), message="the hub to write its ui_url into hub.json")
    return {"spool": spool, "store": store, "hub": hub, "url": url}


def _ui_url(spool: Path):
    try:
        return json.loads((spool / "hub.json").read_text()).get("ui_url")
    except (OSError, ValueError):
        return None


def stop_workers(spool: Path) -> None:
    for pid in local_worker_pids(spool):
        os.kill(pid, signal.SIGTERM)
    wait_for(lambda: not local_worker_pids(spool), timeout=30, message="the booted workers to stop")


@pytest.fixture
def ui_ci(tmp_path, start_node):
    """A hub on the shipped pipeline serving its web UI on a free port; it boots its own workers."""
    ci = start_hub(start_node, tmp_path, "--tick", "0.3")
    yield ci
    ci["hub"].stop()
    stop_workers(ci["spool"])


@pytest.fixture
def browser():
    """A headless Chromium of this machine, closed after the test."""
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"no {CHROMIUM}: install it with `apt-get install chromium` to run the browser tests")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed: pip install playwright")
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            launched.close()


def expect(target):
    from playwright.sync_api import expect as playwright_expect
    return playwright_expect(target)


def get(url: str, path: str, headers=None) -> tuple[int, dict, bytes]:
    """GET `path` exactly as written (no normalising of '..' or escapes on the way)."""
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    try:
        connection.request("GET", path, headers=headers or {})
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()


def get_json(url: str, path: str):
    status, headers, body = get(url, path)
    assert status == 200 and headers["Content-Type"] == "application/json", (path, status, body[:200])
    return json.loads(body)


def job_row(page, branch: str):
    """The push card of `branch` on the jobs page."""
    return page.locator("article.push").filter(has=page.get_by_role("link", name=branch, exact=True))


def status_of(page, branch: str):
    return job_row(page, branch).locator(".chip b").first


def test_a_push_appears_live_then_passes_with_its_log_and_artifact(ui_ci, origin, browser, tmp_path):
    sha = origin.commit("feature/live", {"build": live_build()})
    page = browser.new_page()
    page.goto(ui_ci["url"])
    expect(page.locator("h1")).to_have_text("jobs")
    push_event(ui_ci["spool"], origin, "feature/live", sha)

    expect(status_of(page, "feature/live")).to_have_text(re.compile("QUEUED|STARTING|BUILDING"), timeout=TIMEOUT_MS)
    expect(job_row(page, "feature/live")).to_contain_text(sha[:7])
    [job] = wait_for(lambda: building(ui_ci["spool"]), timeout=60, message="the job to build")
    release_build(tmp_path / "ciwork" / job["worker"], job["job"])
    expect(status_of(page, "feature/live")).to_have_text("PASSED", timeout=TIMEOUT_MS)
    page.screenshot(path=tmp_path / "jobs.png")

    job_row(page, "feature/live").locator("a.chip").first.click()
    expect(page.locator("h1")).to_have_text(f"build of feature/live {sha[:7]}")
    wait_for(lambda: store_jobs(ui_ci["store"]), timeout=60, message="the stored record")
    with page.expect_download() as download:
        page.get_by_role("link", name="out.txt").click()
    assert Path(download.value.path()).read_text() == "made\n" and download.value.suggested_filename == "out.txt"
    page.get_by_role("link", name="raw log").click()
    expect(page.locator("body")).to_contain_text("released")

    page.goto(ui_ci["url"] + "workers")
    expect(page.get_by_role("cell", name="build-1", exact=True)).to_be_visible()
    page.close()


def test_a_failed_job_shows_failed_and_its_badge_says_so(ui_ci, origin, browser):
    sha = origin.commit("fix/broken", {"build": BUILD_FAILS})
    push_event(ui_ci["spool"], origin, "fix/broken", sha)
    page = browser.new_page()
    page.goto(ui_ci["url"])
    expect(status_of(page, "fix/broken")).to_have_text("FAILED", timeout=TIMEOUT_MS)
    job_row(page, "fix/broken").locator("a.chip").first.click()
    expect(page.locator("main")).to_contain_text("exit status 3")
    page.close()

    status, headers, body = get(ui_ci["url"], "/badge/fix/broken.svg")
    assert status == 200 and headers["Content-Type"].startswith("image/svg+xml")
    assert badge_texts(body) == ["build", "FAILED"]
    assert badge_texts(get(ui_ci["url"], "/badge/no/such/branch.svg")[2]) == ["build", "unknown"]


def badge_texts(svg: bytes) -> list[str]:
    root = ElementTree.fromstring(svg)
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    return [t.text for t in root.iter("{http://www.w3.org/2000/svg}text")]


def test_a_hostile_branch_name_is_shown_as_text_and_runs_nothing(ui_ci, origin, browser):
    dialogs = []
    page = browser.new_page()
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    page.goto(ui_ci["url"])
    sha = origin.commit(HOSTILE, {"build": BUILD_FAILS})
    push_event(ui_ci["spool"], origin, HOSTILE, sha)

    expect(status_of(page, HOSTILE)).to_have_text("FAILED", timeout=TIMEOUT_MS)  # the part refreshed
    assert page.locator("img").count() == 0
    page.reload()  # drawn by the server
    expect(job_row(page, HOSTILE)).to_have_count(1)
    job_row(page, HOSTILE).locator("a.chip").first.click()
    expect(page.locator("main").get_by_role("link", name=HOSTILE, exact=True)).to_be_visible()
    assert page.locator("img").count() == 0 and dialogs == []
    page.close()

    svg = get(ui_ci["url"], "/badge/" + quote(HOSTILE, safe="/") + ".svg")[2]
    assert badge_texts(svg) == ["build", "FAILED"] and b"<img" not in svg


def test_pages_carry_security_headers_and_json_twins_parse(ui_ci, origin):
    sha = origin.commit("main", {"build": BUILD_FAILS})
    push_event(ui_ci["spool"], origin, "main", sha)
    [(job_id, _)] = wait_for(lambda: store_jobs(ui_ci["store"]), timeout=60, message="the record").items()

    status, headers, body = get(ui_ci["url"], "/")
    nonce = re.search(rb'<script nonce="([^"]+)">', body).group(1).decode()
    assert headers["X-Content-Type-Options"] == "nosniff" and headers["Referrer-Policy"] == "no-referrer"
    assert f"script-src 'nonce-{nonce}'" in headers["Content-Security-Policy"]
    assert not re.search(rb"<[^>]*\son[a-z]+\s*=", body), "no inline event handlers"
    for path in ("/index.json", "/branches.json", "/queue.json", "/workers.json", "/events.json",
                 f"/jobs/{job_id}.json", "/branch.json?name=main"):
        assert isinstance(get_json(ui_ci["url"], path), dict)
    assert get(ui_ci["url"], "/workers", {"Accept": "application/json"})[1]["Content-Type"] == "application/json"
    assert any(j["job"] == job_id for j in get_json(ui_ci["url"], "/index.json")["jobs"])
    wait_for(lambda: get_json(ui_ci["url"], f"/jobs/{job_id}.json")["job"]["status"] == "FAILED",
             message="the hub to hear the job failed")
    events = wait_for(lambda: [e for e in get_json(ui_ci["url"], "/events.json")["events"] if e["log"]],
                      message="a handled event with a log")
    status, headers, body = get(ui_ci["url"], "/events/log/" + events[0]["log"])
    assert status == 200 and headers["Content-Type"].startswith("text/plain")


TRAVERSALS = ["/jobs/../../etc/passwd", "/jobs/%2e%2e/%2e%2e/hub.json", "/jobs/{job}/files/../job.json",
              "/jobs/{job}/files/..%2f..%2f..%2fhub.json", "/jobs/{job}/files/%252e%252e/log.txt",
              "/jobs/{job}/../{job}/log", "/jobs/..%2f{job}/log", "/jobs/not-a-job", "/jobs/{job}/files/.x",
              "/events/log/done/../../hub.json", "/events/log/..%2fdone/x.log", "/events/log/work/2026-01-01/x.log",
              "/badge/..%2f..%2fhub.svg", "/state/jobs/{job}.json", "/hub.json", "/../hub.json"]


def test_paths_outside_the_served_roots_are_404(ui_ci, origin):
    sha = origin.commit("main", {"build": BUILD_OK})
    push_event(ui_ci["spool"], origin, "main", sha)
    [(job_id, job)] = wait_for(lambda: store_jobs(ui_ci["store"]), timeout=60, message="the record").items()
    assert job["files"] == ["out.txt"]
    assert get(ui_ci["url"], f"/jobs/{job_id}/files/out.txt")[2] == b"made\n"
    headers = get(ui_ci["url"], f"/jobs/{job_id}/files/out.txt")[1]
    assert headers["Content-Type"] == "application/octet-stream" and "attachment" in headers["Content-Disposition"]
    for path in TRAVERSALS:
        status, _, body = get(ui_ci["url"], path.format(job=job_id))
        assert status == 404, (path, body[:200])


def test_with_state_deleted_the_jobs_come_from_the_store(ui_ci, origin, tmp_path, start_node):
    sha = origin.commit("main", {"build": BUILD_FAILS})
    push_event(ui_ci["spool"], origin, "main", sha)
    [(job_id, _)] = wait_for(lambda: store_jobs(ui_ci["store"]), timeout=60, message="the record").items()
    wait_for(lambda: any(e["type"] == "work_done" for e in get_json(ui_ci["url"], "/events.json")["events"]),
             message="the hub to hear the job is done")
    assert ui_ci["hub"].stop() == 0
    stop_workers(ui_ci["spool"])
    shutil.rmtree(ui_ci["spool"] / "state")

    again = start_hub(start_node, tmp_path)  # no --tick: nothing rebuilds state/ while we look
    listed = get_json(again["url"], "/index.json")
    assert listed["source"] == "store" and [j["job"] for j in listed["jobs"]] == [job_id]
    assert get_json(again["url"], f"/jobs/{job_id}.json")["job"]["status"] == "FAILED"
    assert b"error: it does not build" in get(again["url"], f"/jobs/{job_id}/log")[2]
    again["hub"].stop()


def test_up_serves_the_ui_on_a_free_port_when_its_port_is_taken(origin, tmp_path, start_node):
    spool = tmp_path / "spool"
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy_port = taken.getsockname()[1]
        up = start_node("up", "--repo", origin.bare, "--spool", spool, "--store", f"file://{tmp_path / 'store'}",
                        "--workdir", tmp_path / "ciwork", "--ui", f"127.0.0.1:{busy_port}")
        try:
            url = wait_for(lambda: _ui_url(spool), timeout=30, message="the hub of `up` to serve its UI")
            assert url != f"http://127.0.0.1:{busy_port}/"
            assert get(url, "/")[0] == 200
            assert f"  ui        {url}" in wait_for(lambda: "ui " in up.stderr() and up.stderr(), message="the banner")
        finally:
            assert up.stop(signal.SIGINT, timeout=60) == 0, up.stderr()
