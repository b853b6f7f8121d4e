"""The forge options of `trivialci hub` and `up`, and `trivialci approve`: refusals in one line, secrets kept in.

Real `trivialci` processes; the webhook endpoint is reached over real HTTP.
"""

import json
import os
import signal
import socket

import pytest
from conftest import pid_alive, records, run_cli, wait_for, write_script
from forges import SECRET, TOKEN, deliver, push
from gitrepo import Origin, git

from trivialci.hub.boot import boot_here
from trivialci.up import local_worker_pids

PROBE = """import json, os
with open(os.environ["PROBE_OUT"], "w") as out:
    json.dump(sorted(os.environ), out)
"""


def heartbeat(spool) -> dict:
    try:
        return json.loads((spool / "hub.json").read_text())
    except (OSError, ValueError):
        return {}


@pytest.mark.parametrize("args, env, words", [
    (["--webhook", "127.0.0.1:0", "--repo", "/x"], {}, "TRIVIALCI_WEBHOOK_SECRET"),
    (["--webhook", "127.0.0.1:0"], {"TRIVIALCI_WEBHOOK_SECRET": SECRET}, "--repo"),
    (["--webhook", "nowhere", "--repo", "/x"], {"TRIVIALCI_WEBHOOK_SECRET": SECRET}, "HOST:PORT"),
    ([], {"TRIVIALCI_GITEA_TOKEN": TOKEN}, "TRIVIALCI_GITEA_API_URL"),
    ([], {"TRIVIALCI_GITLAB_TOKEN": TOKEN, "TRIVIALCI_GITLAB_API_URL": "file:///etc"}, "not an http(s) URL"),
    (["--public-url", "javascript:alert(1)"], {}, "--public-url"),
])
def test_a_hub_with_forge_options_it_cannot_follow_says_why_in_one_line(spool, args, env, words):
    clean = {name: "" for name in ("TRIVIALCI_WEBHOOK_SECRET", "TRIVIALCI_GITHUB_TOKEN")}
    done = run_cli("hub", "--spool", spool, "--drain", *args, env={**clean, **env}, timeout=30)
    assert done.returncode == 2 and words in done.stderr, done.stderr
    assert "Traceback" not in done.stderr and TOKEN not in done.stderr and SECRET not in done.stderr


@pytest.mark.parametrize("kind", ["fifo", "link", "empty"])
def test_a_secret_file_that_is_not_a_plain_file_with_a_secret_is_refused_at_once(spool, tmp_path, kind):
    path = tmp_path / "secret"
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "link":
        (tmp_path / "real").write_text(SECRET)
        path.symlink_to(tmp_path / "real")
    else:
        path.write_text("\n")
    done = run_cli("hub", "--spool", spool, "--drain", "--webhook", "127.0.0.1:0", "--repo", "/x",
                   "--webhook-secret-file", path, timeout=30)
    assert done.returncode == 2 and "secret file" in done.stderr, done.stderr


def test_the_secret_and_tokens_stay_in_the_hub_process(spool, pipeline, tmp_path, start_node):
    """Neither the hub's scripts nor what they start see them; the secret comes from a file, not argv."""
    secret_file = tmp_path / "secret"
    secret_file.write_text(SECRET + "\n")
    secret_file.chmod(0o600)
    write_script(pipeline, "probe.py", PROBE)
    hub = start_node("hub", "--spool", spool, "--pipeline", pipeline, "--webhook", "127.0.0.1:0", "--repo",
                     tmp_path / "octo" / "app.git", "--webhook-secret-file", secret_file,
                     env={"TRIVIALCI_GITHUB_TOKEN": TOKEN, "TRIVIALCI_WEBHOOK_SECRET": "other",
                          "PROBE_OUT": str(tmp_path / "env.json")})
    url = wait_for(lambda: heartbeat(spool).get("webhook_url"), message="the webhook endpoint")
    assert deliver(url, "github", "ping", {"zen": "z"})[0] == 200  # the file's secret, not the environment's
    assert deliver(url, "github", "ping", {"zen": "z"}, secret="other")[0] == 403
    run_cli("emit", "probe", "{}", "--spool", spool)
    seen = wait_for(lambda: (tmp_path / "env.json").exists() and json.loads((tmp_path / "env.json").read_text()),
                    message="the probe script")
    assert "TRIVIALCI_GITHUB_TOKEN" not in seen and "TRIVIALCI_WEBHOOK_SECRET" not in seen
    assert "TRIVIALCI_FORGES" in seen and "TRIVIALCI_WEBHOOK_URL" in seen
    assert SECRET not in open(f"/proc/{hub.proc.pid}/cmdline", "rb").read().decode(errors="replace")
    hub.stop()
    assert SECRET not in hub.stderr() and TOKEN not in hub.stderr()


@pytest.mark.parametrize("args, words", [
    (["not-a-job"], "is not a job id"),
    (["20261125T034405Z-abc123"], "not in the hub's state"),
])
def test_approve_refuses_what_it_cannot_approve_in_one_line(spool, args, words):
    run_cli("emit", "hello", "{}", "--spool", spool)  # makes the hub's inbox
    done = run_cli("approve", *args, "--spool", spool)
    assert done.returncode == 2 and words in done.stderr and "Traceback" not in done.stderr, done.stderr
    assert not list((spool / "inbox").glob("approve*"))


def test_approve_without_a_spool_says_so(tmp_path):
    done = run_cli("approve", "20261125T034405Z-abc123", "--spool", tmp_path / "none")
    assert done.returncode == 2 and "no spool" in done.stderr


def test_up_watches_several_repositories_takes_webhooks_and_polls_as_a_safety_net(tmp_path, start_node):
    first, second = Origin(tmp_path / "one"), Origin(tmp_path / "two")
    (tmp_path / "two" / "octo").mkdir()
    second.bare = second.bare.rename(tmp_path / "two" / "octo" / "app.git")  # named as on the forge
    git("remote", "set-url", "origin", second.bare, cwd=second.work)
    first.commit({"README": "one"})
    second.commit({"README": "two"})
    spool = tmp_path / "spool"
    port = _free_port()
    up = start_node("up", "--repo", first.bare, "--repo", second.bare, "--spool", spool, "--store",
                    f"file://{tmp_path / 'store'}", "--workdir", tmp_path / "ciwork", "--ui", "off",
                    "--webhook", f"127.0.0.1:{port}", "--public-url", "https://ci.example.com",
                    env={"TRIVIALCI_WEBHOOK_SECRET": SECRET})
    try:
        wait_for(lambda: len(list((spool / "state" / "gitwatcher").glob("*.json"))) == 2, timeout=30,
                 message="a gitwatcher for each repository")
        wait_for(lambda: "webhook_url" in _heartbeat(spool), timeout=30, message="the hub's webhook endpoint")
        assert f"webhook   https://ci.example.com:{port}/hooks/github" in up.stderr()
        assert (tmp_path / "ciwork" / "up.log").read_text().count("every 300 s") == 2  # the gitwatchers' own lines
        sha = second.commit({"README": "pushed"})
        status, text = deliver(f"http://127.0.0.1:{port}/hooks/", "github", "push",
                               push("github", "octo/app", "main", sha))
        assert status == 202 and str(second.bare) not in text
        wait_for(lambda: any(sha in p.read_text() for p in (spool / "done").glob("*/*-branch_update.*.json")),
                 timeout=30, message="the hub to take the webhook's push")
    finally:
        if up.proc.poll() is None:
            assert up.stop(signal.SIGINT, timeout=60) == 0, up.stderr()
        for pid in local_worker_pids(spool):
            os.kill(pid, signal.SIGKILL)


def _heartbeat(spool) -> dict:
    """hub.json, which names the webhook's URL once the hub listens there (up's banner comes before)."""
    try:
        return json.loads((spool / "hub.json").read_text())
    except (OSError, ValueError):
        return {}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_a_worker_the_hub_boots_never_inherits_the_hubs_secrets(spool, pipeline, tmp_path):
    """Defence in depth: even a hub started without `trivialci hub` (which drops them) boots clean workers."""
    env = {**os.environ, "TRIVIALCI_SPOOL": str(spool), "TRIVIALCI_WORKDIR": str(tmp_path / "wd" / "hub"),
           "TRIVIALCI_PIPELINE": str(pipeline), "TRIVIALCI_GITHUB_TOKEN": TOKEN, "TRIVIALCI_WEBHOOK_SECRET": SECRET}
    line = boot_here("build", "build-1", env)
    pid = int(line.split(", pid ")[1].split(":")[0])
    try:
        environ = open(f"/proc/{pid}/environ", "rb").read()
    finally:
        os.kill(pid, signal.SIGTERM)
        wait_for(lambda: not pid_alive(pid), timeout=30, message="the booted worker to stop")
    assert TOKEN.encode() not in environ and SECRET.encode() not in environ


@pytest.mark.parametrize("event_type, change, words", [
    ("pull_request", {"number": "7"}, "pull request number"),
    ("pull_request", {"number": True}, "pull request number"),
    ("pull_request", {"branch": "main"}, "bad branch 'main' for pull request 7"),
    ("pull_request", {"number": 8}, "bad branch 'pull/7' for pull request 8"),
    ("pull_request", {"new": "HEAD"}, "bad commit id"),
    ("pull_request", {"branch": "-x"}, "bad branch name"),
    ("approve", {"job": "../../x"}, "bad job id"),
    ("approve", {"job": "20261125T034405Z-abc123"}, "no job 20261125T034405Z-abc123"),
    ("commit_status", {"forge": "github", "status": "PASSED", "forge_repo": "../x"}, "refused repository name"),
    ("commit_status", {"forge": "nowhere", "status": "PASSED"}, "unknown forge"),
    ("commit_status", {"forge": "github", "status": "GREAT"}, "bad job status"),
])
def test_a_hostile_forge_event_dropped_in_the_spool_is_refused_by_its_script(spool, tmp_path, event_type, change,
                                                                             words):
    base = {"pull_request": {"repo": str(tmp_path / "nowhere.git"), "action": "opened", "number": 7,
                             "branch": "pull/7", "ref": "refs/pull/7/head", "new": "a" * 40, "fork": True},
            "approve": {"job": "20261125T034405Z-abc123", "sha": "a" * 40, "by": "me"},
            "commit_status": {"job": "20261125T034405Z-abc123", "forge_repo": "octo/app", "sha": "a" * 40,
                              "kind": "build", "attempt": 1}}[event_type]
    assert run_cli("emit", event_type, json.dumps({**base, **change}), "--spool", spool).returncode == 0
    done = run_cli("hub", "--spool", spool, "--drain", "--workdir", tmp_path / "wd", timeout=60)
    assert done.returncode == 0, done.stderr
    assert len(records(spool, "failed")) == 1
    text = "".join(p.read_text() for p in spool.glob("failed/*/*.log"))
    assert "refused" in text and words in text, text
    assert not (spool / "state" / "statuses").exists() or not list((spool / "state" / "statuses").glob("*.json"))
