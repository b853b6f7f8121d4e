"""The pages a team lives in, in a real headless Chromium against a real hub: pushes, logs, branches, queue."""

import os
import re
import shutil
from pathlib import Path

import pytest

from conftest import gated_build, release_build, wait_for
from test_flow import BUILD_FAILS, BUILD_OK, building, git, origin, push_event, store_jobs  # noqa: F401 (a fixture)
from trivialci.hub import HubState

from test_webui import TIMEOUT_MS, browser, expect, get, job_row, status_of, ui_ci  # noqa: F401 (fixtures)

SCREENSHOTS = "TRIVIALCI_SCREENSHOTS"  # a directory for the screenshots (docs/ for the README's); else tmp_path
COLOURED = ("#!/bin/sh\nprintf 'plain line\\n'\nprintf '\\033[1;31mFAILED\\033[0m test_x \\033[32mok\\033[0m\\n'\n"
            "printf 'cursor\\033[2K\\033[1Gmoved \\033]0;title\\007done\\n'\nexit 1\n")
HTML_SUBJECT = "<script>alert(1)</script> fix <b>bold</b>"
HTML_AUTHOR = "Eve &lt;b&gt; O'Neil"  # git drops '<' and '>' from names: entities must stay text


@pytest.fixture
def shots(tmp_path) -> Path:
    """Where the screenshots go: $TRIVIALCI_SCREENSHOTS (`TRIVIALCI_SCREENSHOTS=docs pytest ...` remakes the
    README's), else the test's own directory, so that a test run leaves the checkout as it was."""
    return Path(os.environ.get(SCREENSHOTS) or tmp_path)


def watch_dialogs(page) -> list:
    dialogs = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    return dialogs


def test_a_push_shows_subject_and_author_as_text(ui_ci, origin, browser, tmp_path):
    git("config", "user.name", HTML_AUTHOR, cwd=origin.work)
    sha = origin.commit("main", {"build": BUILD_OK}, message=HTML_SUBJECT)
    push_event(ui_ci["spool"], origin, "main", sha)
    page = browser.new_page()
    dialogs = watch_dialogs(page)
    page.goto(ui_ci["url"])
    expect(status_of(page, "main")).to_have_text("PASSED", timeout=TIMEOUT_MS)
    card = job_row(page, "main")
    expect(card.locator(".subject")).to_have_text(HTML_SUBJECT)
    expect(card.locator(".meta")).to_contain_text(HTML_AUTHOR)
    expect(card.locator("code")).to_have_text(sha[:7])
    expect(card.locator("time")).to_have_attribute("title", re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC"))
    page.reload()
    assert page.locator("img").count() == 0 and page.locator("main b").count() == 1 and dialogs == []
    [job] = store_jobs(ui_ci["store"]).values()
    assert job["subject"] == HTML_SUBJECT and job["author"] == HTML_AUTHOR, "subject and author reach the store"
    page.close()
    copy = tmp_path / "copy"
    shutil.copytree(ui_ci["spool"], copy, ignore=shutil.ignore_patterns("*.sock", "work"))
    shutil.rmtree(copy / "state")
    rebuilt = HubState.open(copy).job(job["job"])
    assert (rebuilt["subject"], rebuilt["author"]) == (HTML_SUBJECT, HTML_AUTHOR), "they travel in the queue event"


def test_a_coloured_log_is_drawn_as_styled_spans_with_linked_line_numbers(ui_ci, origin, browser, shots):
    for n in range(3):  # earlier runs, for the chart
        push_event(ui_ci["spool"], origin, "colours", origin.commit("colours", {"build": BUILD_OK}))
        wait_for(lambda: len(store_jobs(ui_ci["store"])) == n + 1, timeout=60, message="an earlier run")
    sha = origin.commit("colours", {"build": COLOURED}, message="Make the parser strict")
    push_event(ui_ci["spool"], origin, "colours", sha)
    [job_id] = wait_for(lambda: [j for j, r in store_jobs(ui_ci["store"]).items() if r["sha"] == sha], timeout=60,
                        message="the record")
    page = browser.new_page()
    page.goto(f"{ui_ci['url']}jobs/{job_id}")
    log = page.locator("#log-lines")
    expect(log).to_contain_text("FAILED test_x ok", timeout=TIMEOUT_MS)
    expect(log.locator("span.b.f1")).to_have_text("FAILED")
    expect(log.locator("span.f2")).to_have_text("ok")
    assert "rgb(255, 123, 114)" == log.locator("span.b.f1").evaluate("e => getComputedStyle(e).color")
    text = log.inner_text()
    assert "\x1b" not in text and "[1;31m" not in text and "title" not in text and "cursormoved done" in text
    expect(page.locator("#L2 > a")).to_have_attribute("href", "#L2")
    expect(page.locator("main")).to_contain_text("exit status 1")
    expect(page.locator("main code.command")).to_have_text(f"trivialci rebuild {job_id}")
    expect(page.locator("main svg.chart rect.current")).to_have_count(1)
    expect(page.locator("main svg.chart rect")).to_have_count(4)
    page.set_viewport_size({"width": 1000, "height": 800})
    page.screenshot(path=shots / "webui-job.png", full_page=True)
    page.set_viewport_size({"width": 390, "height": 800})
    assert page.evaluate("document.documentElement.scrollWidth") <= 390, "nothing wider than a phone"
    page.close()


def test_a_running_jobs_log_follows_live_on_its_page(ui_ci, origin, browser, tmp_path):
    sha = origin.commit("live", {"build": gated_build(before="echo before the gate\n", after="echo after the gate\n")})
    push_event(ui_ci["spool"], origin, "live", sha)
    [job] = wait_for(lambda: building(ui_ci["spool"]), timeout=60, message="the job to build")
    page = browser.new_page()
    page.goto(f"{ui_ci['url']}jobs/{job['job']}")
    expect(page.locator("#log-lines")).to_contain_text("before the gate", timeout=TIMEOUT_MS)
    expect(page.locator("#log-state")).to_have_text("following the log")
    release_build(tmp_path / "ciwork" / job["worker"], job["job"])
    expect(page.locator("#log-lines")).to_contain_text("after the gate", timeout=TIMEOUT_MS)
    expect(page.locator("main .badge")).to_have_text("PASSED", timeout=TIMEOUT_MS)
    assert page.locator("#log-lines").inner_text().count("before the gate") == 1
    page.close()


def test_the_branches_view_shows_a_push_that_built_nothing_with_the_gitignore_hint(ui_ci, origin, browser, shots):
    built = origin.commit("main", {"build": BUILD_OK}, message="builds")
    push_event(ui_ci["spool"], origin, "main", built)
    git("rm", "-q", "-r", ".trivialci", cwd=origin.work)
    empty = origin.commit("docs/only", {}, message="no pipeline")
    push_event(ui_ci["spool"], origin, "docs/only", empty)
    push_event(ui_ci["spool"], origin, "tmp/try", empty)
    page = browser.new_page()
    page.goto(ui_ci["url"] + "branches")
    card = page.locator("article").filter(has=page.get_by_role("link", name="docs/only", exact=True))
    expect(card).to_contain_text(f"nothing to build: {empty[:12]} has no executable files", timeout=TIMEOUT_MS)
    expect(card.locator(".hint")).to_contain_text("git check-ignore -v")
    skipped = page.locator("article").filter(has=page.get_by_role("link", name="tmp/try", exact=True))
    expect(skipped).to_contain_text("skipped", timeout=TIMEOUT_MS)
    main = page.locator("article").filter(has=page.get_by_role("link", name="main", exact=True))
    expect(main.locator(".chip b")).to_have_text("PASSED", timeout=TIMEOUT_MS)
    page.set_viewport_size({"width": 1000, "height": 700})
    page.screenshot(path=shots / "webui-branches.png", full_page=True)
    page.get_by_role("link", name="main", exact=True).click()
    expect(page.locator("h1")).to_have_text("branch main")
    expect(page.locator("main svg.chart")).to_have_count(1)
    page.close()


def test_queued_jobs_show_their_position_and_why_they_wait(ui_ci, origin, browser):
    (ui_ci["spool"] / "state" / "PAUSE").parent.mkdir(parents=True, exist_ok=True)
    (ui_ci["spool"] / "state" / "PAUSE").write_text("")
    for branch in ("one", "two"):
        push_event(ui_ci["spool"], origin, branch, origin.commit(branch, {"build": BUILD_OK}))
    page = browser.new_page()
    page.goto(ui_ci["url"] + "queue")
    rows = page.locator("tbody tr")
    expect(rows).to_have_count(2, timeout=TIMEOUT_MS)
    expect(rows.nth(0).locator("td.why")).to_contain_text("dispatch is paused: state/PAUSE exists")
    expect(rows.nth(1).locator("td").first).to_have_text("2")
    expect(rows.nth(1).locator("td.why")).to_contain_text("1 ahead of it")
    (ui_ci["spool"] / "state" / "PAUSE").unlink()
    expect(page.locator("main")).to_contain_text(re.compile("booting|busy|idle|Nothing is queued"), timeout=TIMEOUT_MS)
    page.close()


def test_events_hide_ticks_until_asked(ui_ci, origin, browser):
    wait_for(lambda: any((ui_ci["spool"] / "done").glob("*/*-tick.*.result.json")), timeout=30, message="a tick")
    page = browser.new_page()
    page.goto(ui_ci["url"] + "events")
    expect(page.locator("main")).to_contain_text("are hidden")
    assert page.get_by_role("cell", name="tick", exact=True).count() == 0
    page.get_by_role("link", name="Show them").click()
    expect(page.get_by_role("cell", name="tick", exact=True).first).to_be_visible()
    page.close()


def test_the_jobs_page_at_a_phones_width_and_for_the_docs(ui_ci, origin, browser, shots):
    pushes = (("main", "Ada Lovelace", {"build": BUILD_OK, "lint": BUILD_OK}, "Parse the config once"),
              ("fix/login", "Grace Hopper", {"build": BUILD_FAILS}, "Fix the login redirect"),
              ("feature/search", "Alan Turing", {"build": BUILD_OK, "lint": BUILD_FAILS}, "Add search to the jobs page"))
    for branch, author, scripts, subject in pushes:
        git("config", "user.name", author, cwd=origin.work)
        push_event(ui_ci["spool"], origin, branch, origin.commit(branch, scripts, message=subject))
    wait_for(lambda: len(store_jobs(ui_ci["store"])) == 6, timeout=90, message="six records (lint came along)")
    page = browser.new_page(viewport={"width": 1000, "height": 600})
    page.goto(ui_ci["url"])
    expect(status_of(page, "fix/login")).to_have_text("FAILED", timeout=TIMEOUT_MS)
    expect(job_row(page, "main").locator(".chip")).to_have_count(2)
    expect(job_row(page, "feature/search").locator(".chip b").nth(1)).to_have_text("FAILED", timeout=TIMEOUT_MS)
    expect(job_row(page, "main").locator(".meta")).to_contain_text("Ada Lovelace")
    page.screenshot(path=shots / "webui-jobs.png", full_page=True)
    page.set_viewport_size({"width": 390, "height": 800})
    assert page.evaluate("document.documentElement.scrollWidth") <= 390, "nothing wider than a phone"
    page.screenshot(path=shots / "webui-phone.png", full_page=True)
    page.close()


def test_a_push_in_stages_shows_each_stage_in_order(ui_ci, origin, browser):
    git("rm", "-q", "-r", "--ignore-unmatch", ".trivialci", cwd=origin.work)
    sha = origin.commit("staged", {"01-build": BUILD_OK, "02-test": BUILD_FAILS}, message="Build, then test")
    push_event(ui_ci["spool"], origin, "staged", sha)
    page = browser.new_page()
    page.goto(ui_ci["url"])
    chips = job_row(page, "staged").locator(".chip")
    expect(chips).to_have_count(2, timeout=TIMEOUT_MS)
    expect(chips.nth(1)).to_contain_text(re.compile(r"^2\s*test\s*FAILED"), timeout=TIMEOUT_MS)
    expect(chips.nth(0)).to_contain_text(re.compile(r"^1\s*build\s*PASSED"))
    expect(job_row(page, "staged")).to_have_class(re.compile("s-FAILED"))
    page.close()
