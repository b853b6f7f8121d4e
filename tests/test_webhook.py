"""The webhook endpoint over real HTTP on 127.0.0.1: what is verified, refused, deduplicated and delivered.

A real WebhookServer with a real Receiver on a temp spool; deliveries are
signed the way each forge documents it (tests/forges.py). Every refusal must
leave the hub's inbox empty.
"""

import json
import socket
import time

import pytest
from conftest import events_in, wait_for
from forges import SECRET, ZERO, deliver, post, pull, push, signed_headers

from trivialci.forge import hooks
from trivialci.forge.receive import Receiver
from trivialci.web import webhook
from trivialci.web.webhook import WebhookServer

SHA, SHA2 = "a" * 40, "b" * 40
FORGES = ["github", "gitea", "gitlab"]
NAMES = {"github": "octo/app", "gitea": "octo/app", "gitlab": "group/sub/app"}


@pytest.fixture
def repos(tmp_path):
    """Two configured repositories: a path ending in /octo/app.git and one ending in /group/sub/app."""
    return [str(tmp_path / "git" / "octo" / "app.git"), str(tmp_path / "git" / "group" / "sub" / "app")]


@pytest.fixture
def server(spool, repos):
    with WebhookServer(Receiver(spool, SECRET, repos), "127.0.0.1", 0) as running:
        yield running


def inbox(spool) -> list[dict]:
    return [json.loads(p.read_text()) | {"_type": p.name.split(".")[0]} for p in sorted((spool / "inbox").glob("*.json"))]


# --- signatures ------------------------------------------------------------------

def test_githubs_documented_test_vector_verifies():
    # docs.github.com, "Validating webhook deliveries", "Testing the webhook payload validation"
    signature = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
    hooks.verify_hmac("It's a Secret to Everybody", b"Hello, World!", signature, "X-Hub-Signature-256", "sha256=")
    with pytest.raises(hooks.Refusal) as refused:
        hooks.verify_hmac("It's a Secret to Everybody", b"Hello, World?", signature, "X-Hub-Signature-256", "sha256=")
    assert refused.value.status == 403


def test_the_test_vector_over_http_passes_the_signature_and_stops_at_the_body(server, spool):
    signature = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
    headers = {"Content-Type": "application/json", "X-GitHub-Event": "push", "X-Hub-Signature-256": signature}
    assert post(server.url + "github", b"Hello, World!", headers)[0] == 400  # signed right; not JSON
    wrong = {**headers, "X-Hub-Signature-256": signature[:-1] + "0"}
    assert post(server.url + "github", b"Hello, World!", wrong)[0] == 403
    assert inbox(spool) == []


@pytest.mark.parametrize("forge", FORGES)
def test_a_missing_signature_is_401_and_a_wrong_one_403_and_nothing_is_written(server, spool, forge):
    payload = push(forge, NAMES[forge], "main", SHA)
    signature_headers = {"github": ["X-Hub-Signature-256"], "gitlab": ["X-Gitlab-Token"],
                         "gitea": ["X-Gitea-Signature", "X-Forgejo-Signature", "X-Gogs-Signature"]}[forge]
    missing = {name: None for name in signature_headers}
    status, text = deliver(server.url, forge, "push" if forge != "gitlab" else "Push Hook", payload, **missing)
    assert status == 401, text
    assert deliver(server.url, forge, "push" if forge != "gitlab" else "Push Hook", payload,
                   secret="not the secret")[0] == 403
    assert inbox(spool) == [] and not (spool / "state" / "webhooks").exists()


def test_gitea_with_one_of_two_signatures_wrong_is_refused(server, spool):
    body = json.dumps(push("gitea", "octo/app", "main", SHA)).encode()
    headers = {**signed_headers("gitea", "push", body), "X-Gitea-Signature": "0" * 64}
    assert post(server.url + "gitea", body, headers)[0] == 403
    assert inbox(spool) == []


def test_a_signature_of_another_body_is_refused(server, spool):
    body = json.dumps(push("github", "octo/app", "main", SHA)).encode()
    headers = signed_headers("github", "push", body)
    assert post(server.url + "github", body.replace(b"main", b"mail"), headers)[0] == 403
    assert inbox(spool) == []


# --- what becomes of a delivery -------------------------------------------------

@pytest.mark.parametrize("forge", FORGES)
def test_a_signed_push_becomes_one_branch_update_with_the_configured_repo(server, spool, repos, forge):
    event = "Push Hook" if forge == "gitlab" else "push"
    status, text = deliver(server.url, forge, event, push(forge, NAMES[forge], "feature/x", SHA, SHA2,
                                                          message="Fix it\n\nlong body", author="alice"))
    assert status == 202 and text.startswith("accepted: branch_update feature/x"), text
    [update] = inbox(spool)
    assert update["_type"] == "branch_update"
    assert update["repo"] == (repos[1] if forge == "gitlab" else repos[0])
    assert (update["branch"], update["old"], update["new"]) == ("feature/x", SHA2, SHA)
    assert (update["forge"], update["forge_repo"], update["author"]) == (forge, NAMES[forge], "alice")
    assert update["subject"] == "Fix it" and update["delivery"]


@pytest.mark.parametrize("forge", FORGES)
def test_a_replayed_delivery_is_answered_200_and_not_acted_on_twice(server, spool, forge):
    event = "Push Hook" if forge == "gitlab" else "push"
    payload = push(forge, NAMES[forge], "main", SHA)
    assert deliver(server.url, forge, event, payload, delivery="d-1")[0] == 202
    status, text = deliver(server.url, forge, event, payload, delivery="d-1")
    assert status == 200 and "already received" in text
    assert len(inbox(spool)) == 1


def test_without_a_delivery_id_the_bodys_hash_stands_in(server, spool):
    payload = push("gitlab", NAMES["gitlab"], "main", SHA)
    assert deliver(server.url, "gitlab", "Push Hook", payload, delivery=None)[0] == 202
    assert deliver(server.url, "gitlab", "Push Hook", payload, delivery=None)[0] == 200
    assert deliver(server.url, "gitlab", "Push Hook", push("gitlab", NAMES["gitlab"], "main", SHA2),
                   delivery=None)[0] == 202
    assert len(inbox(spool)) == 2


def test_a_ping_is_answered_and_nothing_is_written(server, spool):
    status, text = deliver(server.url, "github", "ping", {"zen": "Keep it logically awesome.", "hook_id": 1})
    assert status == 200 and "pong" in text
    assert inbox(spool) == []


@pytest.mark.parametrize("forge, event, payload", [
    ("github", "issues", {"action": "opened"}),
    ("github", "pull_request", pull("github", "octo/app", 3, SHA, "octo/app", action="labeled")),
    ("gitlab", "Merge Request Hook", pull("gitlab", "group/sub/app", 3, SHA, "group/sub/app", action="approved")),
    ("gitlab", "Note Hook", {"object_kind": "note"}),
    ("github", "push", push("github", "octo/app", "main", SHA, ref="refs/notes/commits")),
])
def test_events_that_ask_for_no_build_are_answered_200_and_ignored(server, spool, forge, event, payload):
    status, text = deliver(server.url, forge, event, payload)
    assert status == 200 and text.startswith("ignored:"), text
    assert inbox(spool) == []


def test_a_gitlab_update_without_new_commits_is_ignored(server, spool):
    payload = pull("gitlab", "group/sub/app", 3, SHA, "group/sub/app", action="updated")
    del payload["object_attributes"]["oldrev"]
    assert deliver(server.url, "gitlab", "Merge Request Hook", payload)[1].startswith("ignored:")
    assert inbox(spool) == []


@pytest.mark.parametrize("forge", FORGES)
def test_a_deleted_branch_becomes_branch_delete_and_a_tag_a_tag_update(server, spool, forge):
    event = "Push Hook" if forge == "gitlab" else "push"
    assert deliver(server.url, forge, event, push(forge, NAMES[forge], "gone", ZERO, SHA))[0] == 202
    tag_event = "Tag Push Hook" if forge == "gitlab" else "push"
    assert deliver(server.url, forge, tag_event, push(forge, NAMES[forge], "", SHA, ref="refs/tags/v1.0"))[0] == 202
    deleted, tag = sorted(inbox(spool), key=lambda e: e["_type"])
    assert (deleted["_type"], deleted["branch"], deleted["old"]) == ("branch_delete", "gone", SHA)
    assert (tag["_type"], tag["tag"], tag["new"]) == ("tag_update", "v1.0", SHA)


def test_giteas_delete_event_becomes_branch_delete(server, spool):
    payload = {"ref": "old-feature", "ref_type": "branch", "pusher_type": "user",
               "repository": {"full_name": "octo/app", "clone_url": "https://git.example.com/octo/app.git"},
               "sender": {"login": "alice"}}
    assert deliver(server.url, "gitea", "delete", payload)[0] == 202
    [deleted] = inbox(spool)
    assert (deleted["_type"], deleted["branch"], deleted["old"], deleted["forge"]) == (
        "branch_delete", "old-feature", None, "gitea")


@pytest.mark.parametrize("forge", FORGES)
def test_a_pull_request_from_a_fork_and_one_from_a_branch(server, spool, forge):
    name = NAMES[forge]
    event = "Merge Request Hook" if forge == "gitlab" else "pull_request"
    assert deliver(server.url, forge, event, pull(forge, name, 7, SHA, "mallory/app"))[0] == 202
    assert deliver(server.url, forge, event, pull(forge, name, 8, SHA2, name, action="updated",
                                                  author="alice"))[0] == 202
    fork, own = sorted(inbox(spool), key=lambda e: e["number"])
    ref = "merge-requests" if forge == "gitlab" else "pull"
    assert (fork["_type"], fork["action"], fork["branch"], fork["ref"]) == (
        "pull_request", "opened", f"{ref}/7", f"refs/{ref}/7/head")
    assert (fork["new"], fork["fork"], fork["author"]) == (SHA, True, "mallory")
    assert (own["action"], own["fork"], own["new"], own["author"]) == ("updated", False, SHA2, "alice")


def test_a_pull_request_whose_fork_was_deleted_is_a_fork(server, spool):
    assert deliver(server.url, "github", "pull_request", pull("github", "octo/app", 9, SHA, None))[0] == 202
    assert inbox(spool)[0]["fork"] is True


# --- repositories not configured --------------------------------------------------

def test_a_repository_not_configured_is_404_with_a_reason(server, spool):
    status, text = deliver(server.url, "github", "push", push("github", "octo/other", "main", SHA))
    assert status == 404 and "octo/other is not a repository this hub builds" in text
    assert inbox(spool) == []


def test_a_name_that_only_ends_alike_does_not_match(server, spool):
    assert deliver(server.url, "github", "push", push("github", "xocto/app", "main", SHA))[0] == 404
    assert deliver(server.url, "gitlab", "Push Hook", push("gitlab", "ub/app", "main", SHA))[0] == 404
    assert inbox(spool) == []


def test_the_payloads_urls_are_compared_never_fetched(server, spool, repos):
    payload = push("github", "octo/app", "main", SHA)
    payload["repository"].update({"clone_url": "ext::sh -c touch% /tmp/pwned", "ssh_url": "https://evil.example/x"})
    assert deliver(server.url, "github", "push", payload)[0] == 202
    assert inbox(spool)[0]["repo"] == repos[0]


def test_a_clone_url_that_equals_a_configured_url_matches_whatever_the_name(spool, tmp_path):
    url = "https://git.example.com/octo/app.git"
    with WebhookServer(Receiver(spool, SECRET, [url, "https://mirror.example.com/octo/app"]), "127.0.0.1", 0) as srv:
        assert deliver(srv.url, "gitea", "push", push("gitea", "octo/app", "main", SHA))[0] == 202
        assert inbox(spool)[0]["repo"] == url
        status, text = deliver(srv.url, "github", "push", push("github", "octo/app", "main", SHA2))
        assert status == 409 and "matches 2 repositories" in text


# --- hostile values ---------------------------------------------------------------

@pytest.mark.parametrize("branch", ["-rf", "a..b", "x\x1b[31m", "@{-1}", "refs/../../etc", "a" * 300, "x y"])
def test_a_hostile_branch_name_is_400_and_nothing_is_written(server, spool, branch):
    status, text = deliver(server.url, "github", "push", push("github", "octo/app", branch, SHA))
    assert status == 400 and "refused branch" in text
    assert inbox(spool) == []


@pytest.mark.parametrize("change", [
    {"after": "not-a-sha"}, {"after": "A" * 39}, {"before": 42}, {"ref": ["refs/heads/main"]},
    {"repository": {"full_name": "../../etc/passwd"}}, {"repository": {"full_name": "octo/app/../x"}},
    {"repository": "octo/app"}, {"repository": {"full_name": "-x/app"}},
])
def test_hostile_push_fields_are_refused(server, spool, change):
    payload = {**push("github", "octo/app", "main", SHA), **change}
    status, text = deliver(server.url, "github", "push", payload)
    assert status in (200, 400), text  # refused, or (a ref that is no branch) ignored
    assert inbox(spool) == []


@pytest.mark.parametrize("number", [0, -1, True, "7", 2 ** 40, None])
def test_a_hostile_pull_request_number_is_refused(server, spool, number):
    payload = pull("github", "octo/app", 7, SHA, "mallory/app")
    payload["number"] = payload["pull_request"]["number"] = number
    assert deliver(server.url, "github", "pull_request", payload)[0] == 400
    assert inbox(spool) == []


def test_names_and_subjects_are_cut_to_one_printable_line(server, spool):
    payload = push("github", "octo/app", "main", SHA, message="\x1b]0;pwned\x07Title\u202e\nsecond line" + "x" * 10,
                   author="eve\x1b[2J\u200b" + "e" * 500)
    assert deliver(server.url, "github", "push", payload)[0] == 202
    [update] = inbox(spool)
    assert update["subject"] == "]0;pwnedTitle" and update["author"] == "eve[2J" + "e" * 194


def test_a_huge_json_body_is_read_and_reduced_to_a_small_event(server, spool):
    payload = push("github", "octo/app", "main", SHA, message="m" * (20 * 1024 * 1024))
    status, _ = deliver(server.url, "github", "push", payload)
    assert status == 202
    [path] = (spool / "inbox").glob("*.json")
    assert path.stat().st_size < 2000


def test_deep_json_is_400_and_the_server_goes_on(server, spool):
    deep = b'{"ref": "refs/heads/main", "x": ' + b"[" * 200000 + b"]" * 200000 + b"}"
    status, text = deliver(server.url, "github", "push", deep)
    assert status == 400 and "deeply" in text
    assert deliver(server.url, "github", "ping", {"zen": "ok"})[0] == 200


@pytest.mark.parametrize("body", [b"[1, 2]", b'"push"', b'{"ref": NaN}', b"\xff\xfe{}", b""])
def test_bodies_that_are_not_a_json_object_are_400(server, spool, body):
    assert deliver(server.url, "github", "push", body)[0] == 400
    assert inbox(spool) == []


# --- HTTP --------------------------------------------------------------------------

def test_a_body_over_25_mib_is_413_without_being_read(server, spool):
    started = time.monotonic()
    with socket.create_connection(server.server.server_address[:2], timeout=10) as raw:
        raw.sendall(b"POST /hooks/github HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                    b"Content-Length: %d\r\n\r\n" % (25 * 1024 * 1024 + 1))
        answer = raw.recv(4096)
    assert answer.startswith(b"HTTP/1.0 413") and time.monotonic() - started < 5
    assert inbox(spool) == []


def test_other_paths_methods_and_content_types_are_refused(server, spool):
    body = json.dumps(push("github", "octo/app", "main", SHA)).encode()
    headers = signed_headers("github", "push", body)
    assert post(server.url + "bitbucket", body, headers)[0] == 404
    assert post(server.url.replace("/hooks/", "/"), body, headers)[0] == 404
    form = {**headers, "Content-Type": "application/x-www-form-urlencoded"}
    status, text = post(server.url + "github", body, form)
    assert status == 415 and "application/json" in text
    host, port = server.server.server_address[:2]
    with socket.create_connection((host, port), timeout=10) as raw:
        raw.sendall(b"GET /hooks/github HTTP/1.0\r\n\r\n")
        assert raw.recv(4096).startswith(b"HTTP/1.0 405")
    assert inbox(spool) == []


def test_a_delivery_without_content_length_is_411(server, spool):
    with socket.create_connection(server.server.server_address[:2], timeout=10) as raw:
        raw.sendall(b"POST /hooks/github HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                    b"Content-Type: application/json\r\n\r\n0\r\n\r\n")
        assert raw.recv(4096).startswith(b"HTTP/1.0 411")


def test_a_body_that_does_not_arrive_in_time_is_408(server, spool, monkeypatch):
    monkeypatch.setattr(webhook, "READ_DEADLINE", 0.5)
    with socket.create_connection(server.server.server_address[:2], timeout=10) as raw:
        raw.sendall(b"POST /hooks/github HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                    b"Content-Length: 1000\r\n\r\n{")
        time.sleep(0.6)  # the deadline passes between two chunks of a slow sender
        raw.sendall(b" " * 10)
        assert raw.recv(4096).startswith(b"HTTP/1.0 408")


def test_connections_past_the_limit_are_answered_503_at_once(spool, repos):
    with WebhookServer(Receiver(spool, SECRET, repos), "127.0.0.1", 0, max_connections=2) as srv:
        address = srv.server.server_address[:2]
        idle = [socket.create_connection(address, timeout=10) for _ in range(2)]
        try:
            wait_for(lambda: srv.server.slots._value == 0, message="the two idle connections to hold the slots")
            with socket.create_connection(address, timeout=10) as extra:
                assert extra.recv(4096).startswith(b"HTTP/1.0 503")
        finally:
            for connection in idle:
                connection.close()
        wait_for(lambda: _answer(srv.url) == 200, message="a slot again, once the idle connections closed")


def _answer(url: str) -> int | None:
    """A ping's status; None while the server still closes connections at once (503 before the body is sent)."""
    try:
        return deliver(url, "github", "ping", {"zen": "z"})[0]
    except OSError:
        return None


def test_the_secret_is_never_in_an_answer_a_log_or_the_spool(server, spool, caplog):
    caplog.set_level("INFO", logger="trivialci")
    answers = [deliver(server.url, "github", "push", push("github", "octo/app", "main", SHA), secret="wrong"),
               deliver(server.url, "gitlab", "Push Hook", push("gitlab", "group/sub/app", "main", SHA)),
               deliver(server.url, "gitlab", "Push Hook", {"no": "thing"})]
    assert [a[0] for a in answers] == [403, 202, 200]
    assert all(SECRET not in text for _, text in answers)
    assert SECRET not in caplog.text and "webhook: /hooks/github push from 127.0.0.1: 403" in caplog.text
    assert all(SECRET.encode() not in p.read_bytes() for p in spool.rglob("*") if p.is_file())
    assert SECRET not in repr(server.server.RequestHandlerClass.receiver)
    assert events_in(spool, "done") == []
