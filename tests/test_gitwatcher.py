"""The gitwatcher and the post-receive hook: branch changes in a real origin become events in the hub's inbox."""

import json
import re
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, pid_alive, run_cli, wait_for
from gitrepo import Origin, git

from trivialci.git.commands import repo_key
from trivialci.spool import event

HOOK = ROOT / "contrib" / "post-receive"


@pytest.fixture
def origin(tmp_path):
    return Origin(tmp_path)


def inbox_events(spool: Path) -> list[tuple[str, dict]]:
    """(type, payload) of each event in the hub's inbox, oldest first (names carry the time after the type)."""
    files = sorted((spool / "inbox").glob("*.json"), key=lambda p: p.name.split(".", 1)[1])
    return [(p.name.split(".", 1)[0], json.loads(p.read_text())) for p in files]


def take_events(spool: Path) -> list[tuple[str, dict]]:
    """The inbox's events, removed from it (as a hub would), so that each step sees only its own."""
    events = inbox_events(spool)
    for path in (spool / "inbox").glob("*.json"):
        path.unlink()
    return events


def watch_once(spool, origin):
    done = run_cli("gitwatcher", "--spool", spool, "--repo", origin.bare, "--once")
    assert done.returncode == 0, done.stderr
    return done


def update(origin, branch, old, new):
    return ("branch_update", {"repo": str(origin.bare), "branch": branch, "old": old, "new": new})


def test_first_poll_emits_every_branch_as_new_then_nothing(spool, origin):
    main = origin.commit({"README": "1\n"})
    feature = origin.commit({"a": "1\n"}, branch="feat/x")
    watch_once(spool, origin)
    assert sorted(take_events(spool), key=lambda e: e[1]["branch"]) == [
        update(origin, "feat/x", None, feature), update(origin, "main", None, main)]
    state = json.loads((spool / "state" / "gitwatcher" / f"{repo_key(str(origin.bare))}.json").read_text())
    assert state == {"repo": str(origin.bare), "heads": {"feat/x": feature, "main": main}}
    watch_once(spool, origin)
    assert take_events(spool) == []


def test_a_push_and_a_deletion_become_branch_update_and_branch_delete(spool, origin):
    old = origin.commit({"README": "1\n"})
    feature = origin.commit({"a": "1\n"}, branch="feat/x")
    watch_once(spool, origin)
    take_events(spool)
    new = origin.commit({"README": "2\n"})
    origin.delete_branch("feat/x")
    done = watch_once(spool, origin)
    assert take_events(spool) == [
        ("branch_delete", {"repo": str(origin.bare), "branch": "feat/x", "old": feature}),
        update(origin, "main", old, new)]
    assert f"gitwatcher: branch_update main {old[:12]} -> {new[:12]}" in done.stderr


def test_deleting_the_state_file_makes_every_branch_new_again(spool, origin):
    main = origin.commit({"README": "1\n"})
    watch_once(spool, origin)
    take_events(spool)
    shutil.rmtree(spool / "state" / "gitwatcher")
    watch_once(spool, origin)
    assert take_events(spool) == [update(origin, "main", None, main)]


def test_a_relative_path_is_emitted_as_an_absolute_one(tmp_path, origin):
    main = origin.commit({"README": "1\n"})
    done = subprocess.run([sys.executable, "-m", "trivialci", "gitwatcher", "--spool", "spool", "--repo", "origin.git",
                           "--once"], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert take_events(tmp_path / "spool") == [update(origin, "main", None, main)]


@pytest.mark.parametrize("hostile", ["-h", "--upload-pack=touch", "HEAD"])
def test_a_hostile_branch_name_is_skipped_and_logged(spool, origin, hostile):
    main = origin.commit({"README": "1\n"})
    git("update-ref", f"refs/heads/{hostile}", main, cwd=origin.bare)  # the porcelain would refuse the name
    assert hostile in origin.heads()
    done = watch_once(spool, origin)
    assert take_events(spool) == [update(origin, "main", None, main)]
    assert f"skipping a branch of {origin.bare}: bad branch name {hostile!r}" in done.stderr
    assert "not emitted" in done.stderr
    again = watch_once(spool, origin)
    assert take_events(spool) == [] and "skipping" not in again.stderr  # logged once, not at every poll


def test_a_hostile_repository_is_refused_before_git_runs(spool, tmp_path):
    marker = tmp_path / "pwned"
    done = run_cli("gitwatcher", "--spool", spool, "--repo", f"ext::sh -c touch% {marker}", "--once")
    assert done.returncode == 2 and "remote helpers" in done.stderr
    assert not marker.exists() and not (spool / "inbox").exists()


def test_an_unreachable_repository_with_once_exits_4(spool, tmp_path):
    done = run_cli("gitwatcher", "--spool", spool, "--repo", tmp_path / "nowhere.git", "--once")
    assert done.returncode == 4, done.stderr
    assert "Error: `git ls-remote" in done.stderr and "does not appear to be a git repository" in done.stderr


def test_the_running_gitwatcher_picks_up_a_push_within_its_interval(spool, origin, start_node):
    first = origin.commit({"README": "1\n"})
    watcher = start_node("gitwatcher", "--spool", spool, "--repo", origin.bare, "--interval", "0.2")
    wait_for(lambda: inbox_events(spool), message="the first poll's event")
    assert take_events(spool) == [update(origin, "main", None, first)]
    second = origin.commit({"README": "2\n"})
    wait_for(lambda: inbox_events(spool), timeout=10, message="the push to be noticed")
    assert take_events(spool) == [update(origin, "main", first, second)]
    assert watcher.stop(signal.SIGTERM) == 0
    assert "gitwatcher: SIGTERM received; stopping" in watcher.stderr()
    assert watcher.stderr().rstrip().endswith("gitwatcher: stopped")


def test_the_running_gitwatcher_survives_an_unreachable_repository(spool, tmp_path, origin, start_node):
    moved = tmp_path / "moved.git"
    watcher = start_node("gitwatcher", "--spool", spool, "--repo", origin.bare, "--interval", "0.1")
    wait_for(lambda: "watching" in watcher.stderr(), message="the watcher to start")
    origin.bare.rename(moved)
    wait_for(lambda: "trying again every 0.1 s" in watcher.stderr(), message="the failure to be logged")
    moved.rename(origin.bare)
    sha = origin.commit({"README": "back\n"})
    wait_for(lambda: inbox_events(spool), message="the repository to be polled again")
    assert take_events(spool) == [update(origin, "main", None, sha)]
    wait_for(lambda: "works again" in watcher.stderr(), message="the recovery to be logged (after the poll's event)")
    assert watcher.stderr().count("trying again") == 1
    assert watcher.stop(signal.SIGINT) == 0


def test_a_second_signal_stops_a_poll_that_hangs_and_its_git(spool, tmp_path, start_node):
    pid_file = tmp_path / "git-child.pid"
    fake = tmp_path / "bin" / "git"
    fake.parent.mkdir()
    fake.write_text(f"#!/bin/sh\nsleep 60 &\necho $! > {pid_file}\nwait\n")  # an ls-remote that never answers
    fake.chmod(0o755)
    watcher = start_node("gitwatcher", "--spool", spool, "--repo", "https://example.invalid/x.git",
                         env={"PATH": f"{fake.parent}:{os.environ['PATH']}"})
    child = int(wait_for(lambda: pid_file.exists() and pid_file.read_text().strip(), message="the hanging git"))
    watcher.proc.send_signal(signal.SIGTERM)
    wait_for(lambda: "SIGTERM received; stopping" in watcher.stderr(), message="the first signal to be noted")
    assert watcher.proc.poll() is None  # it lets the poll under way finish...
    assert watcher.stop(signal.SIGTERM, timeout=10) == 0  # ...unless asked twice
    assert watcher.stderr().rstrip().endswith("gitwatcher: stopped")
    wait_for(lambda: not pid_alive(child), timeout=10, message="git's child to be killed")

# --- the post-receive hook -----------------------------------------------------

@pytest.fixture
def hooked(origin, spool):
    """The origin with contrib/post-receive installed, as its header says, and `trivialci` on PATH."""
    shutil.copy(HOOK, origin.bare / "hooks" / "post-receive")
    git("config", "trivialci.spool", spool, cwd=origin.bare)
    return {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}


def test_the_hook_is_executable_and_documents_its_installation():
    assert os.access(HOOK, os.X_OK)
    assert "cp contrib/post-receive" in HOOK.read_text() and "trivialci.spool" in HOOK.read_text()


def test_the_post_receive_hook_emits_on_git_push(spool, origin, hooked):
    first = origin.commit({"README": "1\n"}, push=False)
    origin.push("main", env=hooked)
    assert take_events(spool) == [update(origin, "main", None, first)]
    second = origin.commit({"README": "2\n"}, push=False)
    origin.push("main", "main:refs/heads/feat/y", "main:refs/tags/v1", env=hooked)
    assert sorted(take_events(spool), key=lambda e: e[1]["branch"]) == [
        update(origin, "feat/y", None, second), update(origin, "main", first, second)]
    origin.delete_branch("feat/y", env=hooked)
    assert take_events(spool) == [("branch_delete", {"repo": str(origin.bare), "branch": "feat/y", "old": second})]


def test_the_hook_uses_trivialci_spool_from_the_environment_and_trivialci_repo(tmp_path, origin, hooked):
    other_spool = tmp_path / "other-spool"
    git("config", "trivialci.repo", "ssh://git@example.com/project.git", cwd=origin.bare)
    sha = origin.commit({"README": "1\n"}, push=False)
    origin.push("main", env={**hooked, "TRIVIALCI_SPOOL": str(other_spool)})
    assert take_events(other_spool) == [
        ("branch_update", {"repo": "ssh://git@example.com/project.git", "branch": "main", "old": None, "new": sha})]


def test_the_hook_skips_a_hostile_branch_name_and_says_so(spool, origin, hooked):
    sha = origin.commit({"README": "1\n"}, push=False)
    pushed = origin.push("main", "main:refs/heads/-h", env=hooked)
    assert take_events(spool) == [update(origin, "main", None, sha)]
    assert "trivialci: skipping branch '-h'" in pushed.stderr


def test_the_hook_without_a_spool_says_so_and_the_push_succeeds(origin, hooked):
    git("config", "--unset", "trivialci.spool", cwd=origin.bare)
    origin.commit({"README": "1\n"}, push=False)
    pushed = origin.push("main", env={k: v for k, v in hooked.items() if k != "TRIVIALCI_SPOOL"})
    assert "trivialci: no spool" in pushed.stderr


def test_the_hook_writes_json_for_quotes_and_backslashes_in_names(spool, origin, hooked):
    git("config", "trivialci.repo", 'C:\\repos\\"x".git', cwd=origin.bare)
    sha = origin.commit({"README": "1\n"}, push=False)
    origin.push('main:refs/heads/we"ird', env=hooked)
    assert take_events(spool) == [
        ("branch_update", {"repo": 'C:\\repos\\"x".git', "branch": 'we"ird', "old": None, "new": sha})]
    assert not list((spool / "tmp").iterdir()), "nothing is left staged"


def test_the_hook_names_its_events_as_programs_do(spool, origin, hooked):
    origin.commit({"README": "1\n"}, push=False)
    origin.push("main", env=hooked)
    [name] = [p.name for p in (spool / "inbox").glob("*.json")]
    assert re.fullmatch(r"branch_update\.\d{8}T\d{6}\.\d{6}Z\.[A-Za-z0-9-]+\.\d+\.[0-9a-f]+\.json", name), name
    assert event.type_of(name) == "branch_update"


def test_the_hook_delivers_through_trivialci_command_when_set(tmp_path, spool, origin, hooked):
    wrapper = tmp_path / "via-wrapper"
    wrapper.write_text(f'#!/bin/sh\nexec {sys.executable} -m trivialci "$@"\n')
    wrapper.chmod(0o755)
    git("config", "trivialci.command", wrapper, cwd=origin.bare)
    sha = origin.commit({"README": "1\n"}, push=False)
    origin.push("main", env=hooked)
    assert take_events(spool) == [update(origin, "main", None, sha)]
