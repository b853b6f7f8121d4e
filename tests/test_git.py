"""Safe git: hostile branch names and URLs are refused, and git itself refuses ext:: even if one slips through."""

import json
import os
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from conftest import pid_alive, wait_for
from gitrepo import Origin, git

from trivialci.errors import BadInput
from trivialci.git.commands import (GitError, check_branch, check_repo, check_sha, ls_remote_heads, repo_key, resolve_repo,
                           run_git)

HOSTILE_BRANCHES = [
    "--upload-pack=touch /tmp/x", "-h", "$(touch x)", "a..b", "line\nbreak", "ctrl\x01char", "refs/heads/../x",
    "@{-1}", "", "x" * 256, "with space", "a:b", "trailing.lock", "/leading", "HEAD", "bad\udcffutf8",
]
VALID_BRANCHES = ["main", "feat/x", "feat/<img/src=x/onerror=alert(1)>", "release-1.2", "ünïcode"]


@pytest.mark.parametrize("name", HOSTILE_BRANCHES, ids=repr)
def test_check_branch_refuses_hostile_names(name):
    with pytest.raises(BadInput) as refused:
        check_branch(name)
    assert refused.value.exit_code == 2
    assert "bad branch name" in str(refused.value)


@pytest.mark.parametrize("name", VALID_BRANCHES)
def test_check_branch_accepts_what_git_accepts(name):
    assert subprocess.run(["git", "check-ref-format", "--branch", name], capture_output=True).returncode == 0
    assert check_branch(name) == name


REF_PIECES = ["a", "b", "é", ".", "..", "/", "//", "@", "{", "}", "@{", "-", ".lock", "lock", "HEAD", " ", "~", "^", ":",
              "?", "*", "[", "\\", "\x7f", "\x01"]


def git_accepts_branch(name: str) -> bool:
    """git's own answer, outside any repository (no @{-N} to expand): the name printed back unchanged."""
    done = subprocess.run(["git", "check-ref-format", "--branch", name], cwd="/", capture_output=True)
    return done.returncode == 0 and done.stdout == name.encode() + b"\n"


def accepts_branch(name: str) -> bool:
    try:
        return check_branch(name) == name
    except BadInput:
        return False


@pytest.mark.parametrize("name", ["@", "a/@", "x.lock.y", "x/.y", "x./y", "a..b", "a/./b", "a.", "a/", "/a", "a//b",
                                  "a@{b", "@{", "{@", "v@{ation", "foo@bar", ".a", "a.lock/b", "a/b.lock", "é.lock",
                                  "a\x7f", "a*", "a?", "a[", "a]", "a~1", "a^", "a:b", "a\\b"], ids=repr)
def test_check_branch_answers_as_git_does(name):
    assert accepts_branch(name) == git_accepts_branch(name)


@settings(max_examples=300, deadline=None, derandomize=True)
@given(st.lists(st.sampled_from(REF_PIECES), min_size=1, max_size=6).map("".join))
def test_check_branch_answers_as_git_does_for_generated_names(name):
    """The branch rules are checked without git (a process less on each push); git is the judge here."""
    assert accepts_branch(name) == git_accepts_branch(name)


def test_a_name_of_255_bytes_is_accepted_and_256_refused():
    assert check_branch("b" * 255) == "b" * 255
    with pytest.raises(BadInput, match="longer than 255 bytes"):
        check_branch("é" * 128)


def test_at_minus_one_is_refused_even_where_git_would_expand_it(tmp_path, monkeypatch):
    origin = Origin(tmp_path)
    origin.commit({"a": "1"}, branch="other", push=False)
    origin.commit({"a": "2"}, branch="main", push=False)  # now @{-1} is "other" in this repository
    monkeypatch.chdir(origin.work)
    assert git("check-ref-format", "--branch", "@{-1}", cwd=origin.work) == "other"
    with pytest.raises(BadInput):
        check_branch("@{-1}")


@pytest.mark.parametrize("url", [
    "ext::sh -c touch% /tmp/pwned", "-oProxyCommand=x", "fd::17", "", "repo\nwith newline", "tab\there",
    "ssh://-oProxyCommand=x/repo", "ssh://user@-oProxyCommand=x/repo", "-oProxyCommand=x:repo", "evil://host/x",
    "testgit::/tmp/x", "--upload-pack=touch x",
], ids=repr)
def test_check_repo_refuses_hostile_urls(url):
    with pytest.raises(BadInput) as refused:
        check_repo(url)
    assert refused.value.exit_code == 2


@pytest.mark.parametrize("url", [
    "/srv/git/project.git", "relative/repo", "./ext::named-dir", "file:///srv/git/p.git",
    "https://example.com/p.git", "http://example.com/p.git", "git://example.com/p.git", "ssh://git@example.com/p.git",
    "git@example.com:p.git", "example.com:p.git",
])
def test_check_repo_accepts_paths_and_the_usual_urls(url):
    assert check_repo(url) == url


def test_resolve_repo_makes_local_paths_absolute_and_leaves_urls(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert resolve_repo("origin.git") == str(tmp_path / "origin.git")
    assert resolve_repo("git@example.com:p.git") == "git@example.com:p.git"
    assert resolve_repo("https://example.com/p.git") == "https://example.com/p.git"
    assert repo_key("https://example.com/p.git") == repo_key("https://example.com/p.git") != repo_key("x")
    assert len(repo_key("x")) == 16


def test_check_sha():
    sha1, sha256 = "a" * 40, "0123456789abcdef" * 4
    assert check_sha(sha1) == sha1 and check_sha(sha256) == sha256
    assert check_sha("A" * 40) == "a" * 40
    for bad in ("a" * 39, "a" * 41, "g" * 40, "HEAD", "--all", "", None, "a" * 40 + "\n"):
        with pytest.raises(BadInput):
            check_sha(bad)


def ext_url(marker) -> str:
    """An ext:: URL that runs `touch MARKER` ('% ' is how ext:: writes a space)."""
    return f"ext::sh -c touch% {marker}"


def test_git_refuses_ext_even_when_a_hostile_url_reaches_run_git(tmp_path, monkeypatch):
    marker = tmp_path / "pwned"
    # Even a user whose git config allows every protocol is protected: GIT_ALLOW_PROTOCOL wins.
    monkeypatch.setenv("GIT_CONFIG_COUNT", "1")
    monkeypatch.setenv("GIT_CONFIG_KEY_0", "protocol.allow")
    monkeypatch.setenv("GIT_CONFIG_VALUE_0", "always")
    for args in (["ls-remote", ext_url(marker)], ["clone", ext_url(marker), str(tmp_path / "c")],
                 ["ls-remote", "fd::17"]):
        with pytest.raises(GitError) as refused:
            run_git(args, cwd=tmp_path)
        assert refused.value.exit_code == 4
        assert "not allowed" in str(refused.value)
    assert not marker.exists()


def test_without_the_guard_that_url_would_run_a_command(tmp_path):
    """The control experiment: the URL above is really hostile, so the test above means something."""
    marker = tmp_path / "pwned"
    env = {**os.environ, "GIT_CONFIG_COUNT": "1", "GIT_CONFIG_KEY_0": "protocol.allow", "GIT_CONFIG_VALUE_0": "always"}
    env.pop("GIT_ALLOW_PROTOCOL", None)
    subprocess.run(["git", "ls-remote", ext_url(marker)], cwd=tmp_path, env=env, capture_output=True, timeout=60)
    assert marker.exists()


def test_end_of_options_keeps_an_upload_pack_option_a_repository_name(tmp_path):
    marker = tmp_path / "pwned"
    with pytest.raises(GitError):
        run_git(["ls-remote", "--end-of-options", f"--upload-pack=touch {marker}", "x"], cwd=tmp_path)
    assert not marker.exists()


def test_ls_remote_heads_lists_branches_with_their_shas(tmp_path, monkeypatch):
    origin = Origin(tmp_path)
    main = origin.commit({"a": "1"})
    feature = origin.commit({"b": "2"}, branch="feat/x")
    git("tag", "v1", main, cwd=origin.bare)
    monkeypatch.chdir(tmp_path)
    assert ls_remote_heads("origin.git") == {"main": main, "feat/x": feature}
    assert ls_remote_heads(f"file://{origin.bare}") == {"main": main, "feat/x": feature}


def test_ls_remote_heads_of_an_empty_repository_is_empty(tmp_path):
    assert ls_remote_heads(str(Origin(tmp_path).bare)) == {}


def test_git_errors_say_what_git_said(tmp_path):
    with pytest.raises(GitError, match="does not appear to be a git repository|not a git repository|No such"):
        ls_remote_heads(str(tmp_path / "nonexistent.git"))
    with pytest.raises(GitError, match="no such directory"):
        run_git(["status"], cwd=tmp_path / "missing")


def test_a_git_that_hangs_is_killed_with_its_children_at_the_timeout(tmp_path, monkeypatch):
    pid_file = tmp_path / "child.pid"
    fake = tmp_path / "bin" / "git"
    fake.parent.mkdir()
    fake.write_text(f"#!/bin/sh\nsleep 60 &\necho $! > {pid_file}\nwait\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake.parent}:{os.environ['PATH']}")
    with pytest.raises(GitError, match="took more than 0.5 s"):
        run_git(["fetch"], cwd=tmp_path, timeout=0.5)
    child = int(wait_for(lambda: pid_file.exists() and pid_file.read_text().strip(), message="the pid file"))
    wait_for(lambda: not pid_alive(child), timeout=10, message="the grandchild to be gone")


def test_git_runs_without_a_terminal_prompt_and_in_the_c_locale(tmp_path, monkeypatch):
    dump = tmp_path / "env.json"
    fake = tmp_path / "bin" / "git"
    fake.parent.mkdir()
    fake.write_text(f"#!{sys.executable}\nimport json, os\n"
                    f"json.dump(dict(os.environ), open({str(dump)!r}, 'w'))\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake.parent}:{os.environ['PATH']}")
    run_git(["version"], cwd=tmp_path)
    env = json.loads(dump.read_text())
    assert env["GIT_TERMINAL_PROMPT"] == "0" and env["LC_ALL"] == "C"
    assert env["GIT_ALLOW_PROTOCOL"] == "file:git:http:https:ssh"


def test_importing_the_git_layer_loads_no_click_watchdog_or_boto3():
    probe = ("import sys, json\nimport trivialci.git, trivialci.git.mirror, trivialci.git.gitwatcher\n"
             "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in ('click', 'watchdog', 'boto3'))))")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == []
