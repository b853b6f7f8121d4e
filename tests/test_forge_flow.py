"""Forges end to end: a signed webhook builds, the forge's status API hears pending then success.

Real processes: a hub with the shipped pipeline, --webhook on 127.0.0.1, the
workers it boots; real git repositories named like the forge's (…/octo/app.git);
a stand-in for the forge's status API on 127.0.0.1 that checks every request
(tests/forges.py). A fork's pull request waits in HELD until approved.
"""

import json
import os
import signal
import urllib.request

import pytest
from conftest import run_cli, wait_for
from forges import PULL_EVENT, PUSH_EVENT, SECRET, SEEN_PATH, TOKEN, StatusAPI, deliver, pull, push
from gitrepo import Origin, git

from trivialci.up import local_worker_pids

NAMES = {"github": "octo/app", "gitea": "octo/app", "gitlab": "group/sub/app"}
BUILD = ("#!/bin/sh\nif env | grep -q 'TOKEN\\|WEBHOOK_SECRET'; then echo 'a secret leaked'; exit 1; fi\n"
         "echo \"built $TRIVIALCI_BRANCH at $TRIVIALCI_SHA\"\n")
PUBLIC = "https://ci.example.com"
WAIT_FOR_A_STATUS = (  # a build that ends only once the forge has its first status: pending is never overtaken
    "#!/bin/sh\nexec python3 - <<'EOF'\nimport os, time, urllib.request, urllib.error\n"
    "url, deadline = '{seen}' + os.environ['TRIVIALCI_SHA'], time.monotonic() + 60\n"
    "while time.monotonic() < deadline:\n"
    "    try:\n        urllib.request.urlopen(url, timeout=5); break\n"
    "    except urllib.error.URLError:\n        time.sleep(0.05)\n"
    "else:\n    raise SystemExit('the forge never had a status')\nEOF\n")


class Forge:
    """A repository on a forge: its bare repository (named OWNER/NAME.git), a hub that takes its webhooks."""

    def __init__(self, forge, tmp_path, start_node, api: StatusAPI):
        self.forge, self.api, self.tmp = forge, api, tmp_path
        self.origin = Origin(tmp_path / "git")
        self.bare = tmp_path / "git" / f"{NAMES[forge]}.git"
        self.bare.parent.mkdir(parents=True, exist_ok=True)
        self.origin.bare.rename(self.bare)
        git("remote", "set-url", "origin", self.bare, cwd=self.origin.work)
        self.spool, self.store = tmp_path / "spool", tmp_path / "store"
        env = {"TRIVIALCI_WEBHOOK_SECRET": SECRET, f"TRIVIALCI_{forge.upper()}_TOKEN": TOKEN,
               f"TRIVIALCI_{forge.upper()}_API_URL": api.root}
        self.hub = start_node("hub", "--spool", self.spool, "--store", f"file://{self.store}", "--workdir",
                              tmp_path / "ciwork" / "hub", "--tick", "0.3", "--grace", "1", "--webhook", "127.0.0.1:0",
                              "--repo", self.bare, "--public-url", PUBLIC, "--ui", "127.0.0.1:0", env=env)
        beat = wait_for(lambda: _heartbeat(self.spool).get("webhook_url") and _heartbeat(self.spool),
                        message="the hub's webhook endpoint")
        self.hooks, self.ui = beat["webhook_url"], beat["ui_url"]

    def commit(self, message="change", branch="main", push_to=None, build=BUILD) -> str:
        """Commit an executable .trivialci/build on `branch`, push it there (or to the ref `push_to`); its sha."""
        work = self.origin.work
        git("checkout", "-q", "-B", branch, cwd=work)
        (work / ".trivialci").mkdir(exist_ok=True)
        (work / ".trivialci" / "build").write_text(build)
        (work / ".trivialci" / "build").chmod(0o755)
        (work / "notes.txt").write_text(message)
        git("add", "-A", cwd=work)
        git("-c", "user.name=ci", "-c", "user.email=ci@example.invalid", "commit", "-q", "-m", message, cwd=work)
        self.origin.push(f"+HEAD:{push_to or 'refs/heads/' + branch}")
        return git("rev-parse", "HEAD", cwd=work)

    def send_push(self, sha, branch="main"):
        return deliver(self.hooks, self.forge, PUSH_EVENT[self.forge], push(self.forge, NAMES[self.forge], branch, sha))

    def send_pull(self, number, sha, head_repo, action="opened"):
        return deliver(self.hooks, self.forge, PULL_EVENT[self.forge],
                       pull(self.forge, NAMES[self.forge], number, sha, head_repo, action=action))

    def jobs(self) -> dict:
        return {p.stem: json.loads(p.read_text()) for p in (self.spool / "state" / "jobs").glob("*.json")}

    def stored(self, sha) -> list[dict]:
        records = [json.loads(p.read_text()) for p in self.store.glob("jobs/*/job.json")]
        return [r for r in records if r["sha"] == sha]

    def stop(self):
        self.hub.stop()
        for pid in local_worker_pids(self.spool):
            os.kill(pid, signal.SIGTERM)
        wait_for(lambda: not local_worker_pids(self.spool), timeout=30, message="the booted workers to stop")


def _heartbeat(spool) -> dict:
    try:
        return json.loads((spool / "hub.json").read_text())
    except (OSError, ValueError):
        return {}


@pytest.fixture
def make_forge(tmp_path, start_node):
    made = []

    def make(forge):
        api = StatusAPI(forge)
        made.append((api, Forge(forge, tmp_path, start_node, api)))
        return made[-1][1]

    yield make
    for api, forge in made:
        forge.stop()
        api.down()
        assert api.problems == [], "every status request must be one the forge takes"
        secrets = [TOKEN.encode(), SECRET.encode()]
        leaks = [p for root in (forge.spool, forge.store, forge.tmp / "ciwork") for p in root.rglob("*")
                 if p.is_file() and not p.is_symlink() and any(s in p.read_bytes() for s in secrets)]
        assert leaks == [], "a token or the webhook secret was written to a file"


def last_status(forge, sha, state):
    """The last status the forge took for `sha`, if it is `state`."""
    statuses = forge.api.statuses(sha)
    return statuses and statuses[-1]["state"] == state and statuses[-1]


def final_status(forge, sha):
    statuses = forge.api.statuses(sha)
    return statuses and statuses[-1]["state"] in ("success", "failure", "failed", "error") and statuses[-1]


@pytest.mark.parametrize("name", ["github", "gitea", "gitlab"])
def test_a_push_builds_and_the_commit_goes_pending_then_success(make_forge, name):
    forge = make_forge(name)
    seen = f"http://127.0.0.1:{forge.api.port}{SEEN_PATH}"
    sha = forge.commit("first", build=WAIT_FOR_A_STATUS.replace("{seen}", seen))
    status, text = forge.send_push(sha)
    assert status == 202, text
    [job] = wait_for(lambda: [r for r in forge.stored(sha) if r["status"] == "PASSED"], timeout=90,
                     message="the pushed commit to pass")
    last = wait_for(lambda: final_status(forge, sha), timeout=30, message="the success status")
    statuses = forge.api.statuses(sha)
    assert statuses[0]["state"] in ("pending", "running") and last["state"] == "success"
    assert last["description"].startswith("passed in ") and last["target_url"] == f"{PUBLIC}/jobs/{job['job']}"
    assert all(s.get("context", s.get("name")) == "trivialci/build" for s in statuses)
    view = forge.jobs()[job["job"]]
    assert (view["forge"], view["forge_repo"]) == (name, NAMES[name])


def test_the_same_push_seen_by_the_poll_too_is_built_once(make_forge):
    forge = make_forge("github")
    sha = forge.commit("once")
    assert forge.send_push(sha)[0] == 202
    wait_for(lambda: forge.stored(sha), timeout=90, message="the build")
    assert run_cli("gitwatcher", "--spool", forge.spool, "--repo", forge.bare, "--once").returncode == 0
    notes = wait_for(lambda: [p.read_text() for p in (forge.spool / "done").glob("*/*-branch_update.*.log")
                              if "already queued" in p.read_text()], message="the poll's branch_update")
    assert sha[:12] in notes[0] and len(forge.stored(sha)) == 1


def test_a_forge_that_is_down_never_holds_up_the_build_and_hears_the_end_once_back(make_forge):
    forge = make_forge("gitea")
    forge.api.down()
    sha = forge.commit("while the forge is down")
    assert forge.send_push(sha)[0] == 202
    wait_for(lambda: [r for r in forge.stored(sha) if r["status"] == "PASSED"], timeout=90,
             message="the build to pass while the forge's API is down")
    assert forge.api.requests == []
    forge.api.up()
    last = wait_for(lambda: final_status(forge, sha), timeout=60, message="the status once the forge is back")
    assert last["state"] == "success"


def test_a_fork_pull_request_is_held_approved_for_its_head_only_then_built(make_forge):
    forge = make_forge("github")
    forge.commit("base")
    head = forge.commit("from a fork", branch="feature", push_to="refs/pull/7/head")
    assert forge.send_pull(7, head, "mallory/app")[0] == 202
    [held] = wait_for(lambda: [j for j in forge.jobs().values() if j["status"] == "HELD"], message="a held job")
    assert (held["sha"], held["branch"], held["pr"], held["trusted"]) == (head, "pull/7", 7, False)
    waiting = wait_for(lambda: forge.api.statuses(head), timeout=30, message="the pending status")
    assert waiting[-1] == {"state": "pending", "context": "trivialci/build", "target_url": f"{PUBLIC}/jobs/{held['job']}",
                           "description": f"waiting for approval: trivialci approve {held['job']}"}
    listed = run_cli("jobs", "--spool", forge.spool)
    assert "held" in listed.stdout and held["job"] in listed.stdout and "mallory/app" in listed.stdout
    queue_page = json.loads(urllib.request.urlopen(f"{forge.ui}queue.json", timeout=10).read())
    assert [j["job"] for j in queue_page["held"]] == [held["job"]]
    assert queue_page["held"][0]["why"] == f"waiting for approval: trivialci approve {held['job']}"
    assert not local_worker_pids(forge.spool), "nothing is booted for a held job"

    newer = forge.commit("pushed to the fork again", branch="feature", push_to="refs/pull/7/head")
    assert forge.send_pull(7, newer, "mallory/app", action="updated")[0] == 202
    wait_for(lambda: forge.jobs()[held["job"]]["status"] == "SUPERSEDED", message="the older held job to go")
    [again] = wait_for(lambda: [j for j in forge.jobs().values() if j["status"] == "HELD"], message="a new held job")
    stale = run_cli("approve", held["job"], "--spool", forge.spool)
    assert stale.returncode == 2 and "SUPERSEDED, not HELD" in stale.stderr
    moved = run_cli("approve", again["job"], "--sha", head, "--spool", forge.spool)
    assert moved.returncode == 2 and "the pull request moved on" in moved.stderr

    approved = run_cli("approve", again["job"], "--spool", forge.spool)
    assert approved.returncode == 0 and newer[:12] in approved.stdout, approved.stderr
    [record] = wait_for(lambda: [r for r in forge.stored(newer) if r["status"] == "PASSED"], timeout=90,
                        message="the approved job to pass")
    view = forge.jobs()[record["job"]]
    assert view["approval"]["sha"] == newer and view["trusted"] is False
    assert wait_for(lambda: final_status(forge, newer), timeout=30, message="success")["state"] == "success"
    assert forge.stored(head) == [] or all(r["status"] != "PASSED" for r in forge.stored(head))


def test_a_merge_request_from_the_repository_builds_at_once_and_closing_one_held_cancels_it(make_forge):
    forge = make_forge("gitlab")
    forge.commit("base")
    head = forge.commit("own branch", branch="feature", push_to="refs/merge-requests/3/head")
    assert forge.send_pull(3, head, NAMES["gitlab"])[0] == 202
    wait_for(lambda: [r for r in forge.stored(head) if r["status"] == "PASSED"], timeout=90, message="the MR build")
    view = [j for j in forge.jobs().values() if j["sha"] == head][0]
    assert view["branch"] == "merge-requests/3" and view["trusted"] is True and "approval" not in view

    forked = forge.commit("from a fork", branch="other", push_to="refs/merge-requests/4/head")
    assert forge.send_pull(4, forked, "mallory/app")[0] == 202
    [held] = wait_for(lambda: [j for j in forge.jobs().values() if j["status"] == "HELD"], message="a held job")
    assert forge.send_pull(4, forked, "mallory/app", action="closed")[0] == 202
    wait_for(lambda: forge.jobs()[held["job"]]["status"] == "CANCELLED", message="the held job to be cancelled")
    last = wait_for(lambda: last_status(forge, forked, "canceled"), timeout=30, message="the canceled status")
    assert "closed" in last["description"]
