"""Commit statuses out: the outbox (newest wins), the sender (backoff, final failures), each forge's request.

A stand-in for each forge's status API on 127.0.0.1 (tests/forges.py) checks
method, path, headers and body of every request as the forge would; the
sender runs a round at a time (run_once), so nothing here sleeps to wait.
"""

import json
import logging
import socket
import threading
import time

import pytest
from conftest import wait_for
from forges import TOKEN, StatusAPI

from trivialci.errors import BadInput, TrivialCiError
from trivialci.forge import queue_status
from trivialci.forge.outbox import Outbox, key_of
from trivialci.forge.sender import StatusSender, delay_after, forge_settings

SHA = "c" * 40
JOB, JOB2 = "20261125T034405Z-abc123", "20261125T034410Z-def456"
NAMES = {"github": "octo/app", "gitea": "octo/app", "gitlab": "group/sub/app"}


def report(forge="github", state="pending", description="queued", order=f"{JOB}/000001/0", sha=SHA, **changes):
    return {"forge": forge, "forge_repo": NAMES[forge], "sha": sha, "context": "trivialci/build", "state": state,
            "description": description, "target_url": f"https://ci.example.com/jobs/{JOB}", "order": order,
            "job": JOB, **changes}


@pytest.fixture
def api(request):
    server = StatusAPI(getattr(request, "param", "github"))
    yield server
    server.down()
    assert server.problems == [], "every request must be one the forge takes"


def sender_for(spool, api, **options) -> StatusSender:
    return StatusSender(spool, {api.forge: TOKEN}, {api.forge: api.root}, **options)


def pending(spool) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((spool / "state" / "statuses").glob("*.json"))]


def later(seconds: float = 3600) -> float:
    return time.time() + seconds


# --- each forge's request ------------------------------------------------------------

@pytest.mark.parametrize("api", ["github", "gitea", "gitlab"], indirect=True)
def test_each_forge_gets_the_request_its_api_documents(spool, api):
    print(queue_status(spool, report(api.forge, "running", "building")))
    print(queue_status(spool, report(api.forge, "success", "passed in 42 s", order=f"{JOB}/000001/4",
                                     sha="d" * 40)))
    assert sender_for(spool, api).run_once() == 2
    [first] = [r for r in api.requests if r["sha"] == SHA]
    name = "name" if api.forge == "gitlab" else "context"
    state = {"github": "pending", "gitea": "pending", "gitlab": "running"}[api.forge]
    assert first["body"] == {"state": state, name: "trivialci/build", "description": "building",
                             "target_url": f"https://ci.example.com/jobs/{JOB}"}
    if api.forge == "gitlab":
        assert first["path"] == f"/api/v4/projects/group%2Fsub%2Fapp/statuses/{SHA}"
    assert api.statuses("d" * 40)[0]["state"] == "success"
    assert pending(spool) == [] and len(list((spool / "state" / "statuses" / "sent").glob("*.json"))) == 2


@pytest.mark.parametrize("api", ["github", "gitlab"], indirect=True)
def test_failure_error_and_canceled_map_to_each_forges_words(spool, api):
    for number, state in enumerate(["failure", "error", "canceled"]):
        queue_status(spool, report(api.forge, state, f"it {state}", sha=str(number) * 40))
    sender_for(spool, api).run_once()
    words = [api.statuses(str(n) * 40)[0]["state"] for n in range(3)]
    assert words == (["failure", "error", "error"] if api.forge == "github" else ["failed", "failed", "canceled"])


# --- the newest report wins ---------------------------------------------------------------

def test_of_two_reports_queued_for_one_commit_and_context_only_the_newer_is_posted(spool, api):
    queue_status(spool, report(state="pending", description="queued"))
    queue_status(spool, report(state="running", description="building", order=f"{JOB}/000001/2"))
    assert "dropped" in queue_status(spool, report(state="pending", description="starting", order=f"{JOB}/000001/1"))
    sender_for(spool, api).run_once()
    assert [s["description"] for s in api.statuses()] == ["building"]


def test_a_report_older_than_the_one_posted_is_dropped_and_one_that_changes_nothing_too(spool, api):
    sender = sender_for(spool, api)
    queue_status(spool, report(state="success", description="passed in 3 s", order=f"{JOB}/000001/4"))
    sender.run_once()
    assert queue_status(spool, report(state="running", order=f"{JOB}/000001/2")).startswith("dropped")
    assert queue_status(spool, report(state="success", description="passed in 3 s",
                                      order=f"{JOB}/000001/4")).startswith("dropped")
    assert queue_status(spool, report(state="pending", description="queued", order=f"{JOB2}/000001/0",
                                      job=JOB2)).startswith("queued")  # a rebuild of the same commit
    sender.run_once()
    assert [s["description"] for s in api.statuses()] == ["passed in 3 s", "queued"]


@pytest.mark.parametrize("api", ["gitlab"], indirect=True)
def test_gitlab_is_not_told_the_state_it_has(spool, api):
    sender = sender_for(spool, api)
    queue_status(spool, report("gitlab", "running", "starting", order=f"{JOB}/000001/1"))
    sender.run_once()
    assert queue_status(spool, report("gitlab", "running", "building", order=f"{JOB}/000001/2")).startswith("dropped")
    assert [s["state"] for s in api.statuses()] == ["running"]


@pytest.mark.parametrize("field, value", [
    ("forge", "bitbucket"), ("forge_repo", "../../admin"), ("forge_repo", "octo"), ("sha", "HEAD"),
    ("context", "-x"), ("context", "a\nb"), ("state", "great"), ("description", "x" * 141),
    ("description", "bell\x07"), ("target_url", "javascript:alert(1)"), ("target_url", "http://x/ y"),
    ("order", "zzz"), ("job", "../x"),
])
def test_a_report_that_breaks_a_grammar_is_refused_and_nothing_is_written(spool, field, value):
    with pytest.raises(TrivialCiError):
        queue_status(spool, {**report(), field: value})
    assert pending(spool) == []


# --- a forge that is down, slow, or says no ------------------------------------------------

def test_a_forge_that_goes_down_and_comes_back_gets_the_newest_state_in_the_end(spool, api, caplog):
    caplog.set_level(logging.INFO, logger="trivialci")
    sender = sender_for(spool, api)
    api.down()
    queue_status(spool, report(state="pending", description="queued"))
    assert sender.run_once() == 0
    [entry] = pending(spool)
    assert entry["attempts"] == 1 and "cannot reach" in entry["last_error"] and entry["next_try"] > time.time()
    assert sender.run_once() == 0  # not due yet: no request at all
    queue_status(spool, report(state="success", description="passed in 1 s", order=f"{JOB}/000001/4"))
    assert sender.run_once(later()) == 0  # still down
    api.up()
    assert sender.run_once(later()) == 1
    assert [s["state"] for s in api.statuses()] == ["success"] and pending(spool) == []
    assert "trying again in" in caplog.text and TOKEN not in caplog.text


def test_retries_back_off_and_a_final_failure_is_recorded_with_the_reason(spool, api):
    api.answer_with = (503, {}, '{"message": "Service Unavailable"}')
    sender = sender_for(spool, api, attempts=3)
    queue_status(spool, report())
    now = time.time()
    for attempt in (1, 2):
        sender.run_once(now)
        [entry] = pending(spool)
        assert entry["attempts"] == attempt and entry["next_try"] - time.time() == pytest.approx(
            delay_after(attempt), abs=1)
        now = later()
    sender.run_once(now)
    assert pending(spool) == []
    [failed] = [json.loads(p.read_text()) for p in (spool / "state" / "statuses" / "failed").glob("*.json")]
    assert "answered 503" in failed["reason"] and "after 3 tries" in failed["reason"]
    assert [d for d in (delay_after(n) for n in range(1, 14))][:4] == [0.5, 1, 2, 4] and delay_after(20) == 300


def test_a_refusal_is_final_at_once(spool, api):
    api.answer_with = (422, {}, '{"message": "Validation Failed"}')
    queue_status(spool, report())
    sender_for(spool, api).run_once()
    [failed] = [json.loads(p.read_text()) for p in (spool / "state" / "statuses" / "failed").glob("*.json")]
    assert "answered 422" in failed["reason"] and "Validation Failed" in failed["reason"]
    assert len(api.requests) == 1


def test_a_retry_after_is_honoured(spool, api):
    api.answer_with = (429, {"Retry-After": "120"}, "{}")
    queue_status(spool, report())
    sender_for(spool, api).run_once()
    [entry] = pending(spool)
    assert entry["next_try"] - time.time() == pytest.approx(120, abs=5)


def test_a_redirect_is_not_followed_and_the_token_goes_nowhere_else(spool, api):
    other = StatusAPI("github")
    try:
        api.answer_with = (301, {"Location": f"http://127.0.0.1:{other.port}/repos/octo/app/statuses/{SHA}"}, "")
        queue_status(spool, report())
        sender_for(spool, api).run_once()
        assert other.requests == []
        [failed] = [json.loads(p.read_text()) for p in (spool / "state" / "statuses" / "failed").glob("*.json")]
        assert "redirect, not followed" in failed["reason"]
    finally:
        other.down()


def test_a_forge_that_hangs_costs_one_timeout_a_round_and_never_blocks_a_queue(spool):
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)  # accepts connections, never answers
    root = f"http://127.0.0.1:{silent.getsockname()[1]}"
    try:
        sender = StatusSender(spool, {"github": TOKEN}, {"github": root}, timeout=0.5)
        for number in range(5):
            queue_status(spool, report(sha=str(number) * 40))
        round_ = threading.Thread(target=sender.run_once)
        started = time.monotonic()
        round_.start()
        queued = time.monotonic()
        assert queue_status(spool, report(sha="e" * 40)).startswith("queued")  # while the round waits
        assert time.monotonic() - queued < 0.4
        round_.join()
        assert time.monotonic() - started < 2.0, "one timeout for the forge, not one per report"
        assert sum(entry["attempts"] for entry in pending(spool)) == 1
    finally:
        silent.close()


def test_no_token_for_the_forge_is_a_final_failure_that_says_so(spool, api):
    queue_status(spool, report("gitea"))
    sender_for(spool, api).run_once()
    [failed] = [json.loads(p.read_text()) for p in (spool / "state" / "statuses" / "failed").glob("*.json")]
    assert "TRIVIALCI_GITEA_TOKEN" in failed["reason"]


def test_the_sender_thread_posts_by_itself_and_stops(spool, api):
    with sender_for(spool, api, interval=0.02):
        queue_status(spool, report())
        wait_for(lambda: api.statuses(), message="the thread to post")


# --- settings --------------------------------------------------------------------------------

def test_settings_come_from_the_environment_and_are_checked():
    tokens, roots = forge_settings({"TRIVIALCI_GITHUB_TOKEN": "t", "TRIVIALCI_GITLAB_TOKEN": "g",
                                    "TRIVIALCI_GITLAB_API_URL": "https://gitlab.example.com/api/v4/"})
    assert tokens == {"github": "t", "gitlab": "g"}
    assert roots == {"github": "https://api.github.com", "gitlab": "https://gitlab.example.com/api/v4"}
    with pytest.raises(BadInput, match="TRIVIALCI_GITEA_API_URL"):
        forge_settings({"TRIVIALCI_GITEA_TOKEN": "t"})
    for root in ("file:///etc", "https://user:pw@host/api", "ftp://x", "https://host/api?x=1"):
        with pytest.raises(BadInput):
            forge_settings({"TRIVIALCI_GITEA_TOKEN": "t", "TRIVIALCI_GITEA_API_URL": root})


def test_the_token_is_in_no_file(spool, api):
    queue_status(spool, report())
    api.answer_with = (500, {}, "boom")
    sender_for(spool, api, attempts=1).run_once()
    assert all(TOKEN.encode() not in p.read_bytes() for p in spool.rglob("*") if p.is_file())
    assert key_of(report()) in {p.stem for p in (spool / "state" / "statuses" / "failed").glob("*.json")}


def test_old_sent_and_failed_records_are_pruned(spool, api):
    queue_status(spool, report())
    sender_for(spool, api).run_once()
    assert Outbox(spool).prune(time.time() + 8 * 86400) == 1
