"""The worker's mirror: clone/fetch, reads at a commit, worktrees at an exact sha, and one update at a time."""

import fcntl
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, wait_for
from gitrepo import Origin, git

from trivialci.errors import BadInput
from trivialci.git.commands import GitError, repo_key
from trivialci.git.mirror import Mirror


@pytest.fixture
def origin(tmp_path):
    return Origin(tmp_path)


@pytest.fixture
def mirror(tmp_path, origin):
    return Mirror(tmp_path / "workdir", str(origin.bare))


def worktrees(mirror: Mirror) -> list[str]:
    """The worktree paths git knows for the mirror (the bare repository itself left out)."""
    listing = git("worktree", "list", "--porcelain", cwd=mirror.path)
    return [line[len("worktree "):] for line in listing.splitlines()
            if line.startswith("worktree ") and line[len("worktree "):] != str(mirror.path)]


def test_update_clones_a_bare_mirror_under_workdir_mirrors(tmp_path, origin, mirror):
    main = origin.commit({"README": "hello\n"})
    feature = origin.commit({"src/a.txt": "a\n"}, branch="feat/x")
    mirror.update()
    assert mirror.path == tmp_path / "workdir" / "mirrors" / f"{repo_key(str(origin.bare))}.git"
    assert git("rev-parse", "--is-bare-repository", cwd=mirror.path) == "true"
    assert git("config", "remote.origin.url", cwd=mirror.path) == str(origin.bare)
    assert git("rev-parse", "main", "feat/x", cwd=mirror.path).split() == [main, feature]
    assert mirror.lock_path.exists() and not mirror.path.with_name(mirror.path.name + ".new").exists()


def test_update_fetches_new_commits_and_prunes_deleted_branches(origin, mirror):
    origin.commit({"README": "1\n"})
    origin.commit({"b": "1\n"}, branch="gone")
    mirror.update()
    newer = origin.commit({"README": "2\n"})
    origin.delete_branch("gone")
    mirror.update()
    assert git("rev-parse", "main", cwd=mirror.path) == newer
    assert git("branch", "--list", "gone", cwd=mirror.path) == ""


def test_read_file_and_list_dir_at_a_commit_without_a_checkout(origin, mirror):
    first = origin.commit({"README": "one\n", "src/a.txt": "a\n", "src/lib/b.txt": "b\n"})
    second = origin.commit({"README": "two\n", "src/c.txt": "c\n"})
    mirror.update()
    assert mirror.read_file(first, "README") == b"one\n"
    assert mirror.read_file(second, "README") == b"two\n"
    assert mirror.read_file(second, "/src/lib/b.txt") == b"b\n"
    assert mirror.read_file(second, "nope") is None
    assert mirror.read_file(second, "src") is None  # a directory is not a file
    assert mirror.list_dir(first, "") == ["README", "src"]
    assert mirror.list_dir(first, "src") == ["a.txt", "lib"]
    assert mirror.list_dir(second, "src/") == ["a.txt", "c.txt", "lib"]
    assert mirror.list_dir(second, "missing") == [] and mirror.list_dir(second, "README") == []


def test_paths_that_climb_out_are_refused(origin, mirror):
    sha = origin.commit({"README": "x\n"})
    for path in ("../etc/passwd", "src/../../x", "./README"):
        with pytest.raises(BadInput):
            mirror.read_file(sha, path)


def test_reads_fetch_a_commit_the_mirror_does_not_have_yet(origin, mirror):
    origin.commit({"README": "1\n"})
    mirror.update()
    later = origin.commit({"README": "2\n"})
    assert mirror.read_file(later, "README") == b"2\n"


def test_an_unknown_commit_is_bad_input(origin, mirror):
    origin.commit({"README": "1\n"})
    with pytest.raises(BadInput, match="not in .*even after a fetch"):
        mirror.read_file("0" * 40, "README")
    with pytest.raises(BadInput):
        mirror.add_worktree("HEAD", mirror.workdir / "x")


def test_add_worktree_checks_out_the_exact_sha_detached(tmp_path, origin, mirror):
    first = origin.commit({"README": "one\n", "src/a.txt": "a\n"})
    origin.commit({"README": "two\n"})
    mirror.update()
    dest = tmp_path / "workdir" / "jobs" / "J1" / "src"
    assert mirror.add_worktree(first, dest) == dest
    assert git("rev-parse", "HEAD", cwd=dest) == first
    assert git("symbolic-ref", "-q", "HEAD", cwd=dest, check=False) == ""  # detached: HEAD is no branch
    assert (dest / "README").read_text() == "one\n" and (dest / "src" / "a.txt").read_text() == "a\n"
    assert git("status", "--porcelain", cwd=dest) == ""
    assert worktrees(mirror) == [str(dest)]


def test_add_worktree_fetches_first_when_the_sha_is_new(tmp_path, origin, mirror):
    origin.commit({"README": "one\n"})
    mirror.update()
    pushed_since = origin.commit({"README": "two\n"}, branch="feat/new")
    dest = mirror.add_worktree(pushed_since, tmp_path / "jobs" / "J2")
    assert git("rev-parse", "HEAD", cwd=dest) == pushed_since


def test_two_worktrees_of_one_mirror_at_different_shas(tmp_path, origin, mirror):
    first = origin.commit({"README": "one\n"})
    second = origin.commit({"README": "two\n"})
    a = mirror.add_worktree(first, tmp_path / "jobs" / "A" / "src")
    b = mirror.add_worktree(second, tmp_path / "jobs" / "B" / "src")
    assert (a / "README").read_text() == "one\n" and (b / "README").read_text() == "two\n"
    assert sorted(worktrees(mirror)) == sorted([str(a), str(b)])


def test_remove_worktree_removes_it_with_local_changes(tmp_path, origin, mirror):
    sha = origin.commit({"README": "one\n"})
    dest = mirror.add_worktree(sha, tmp_path / "jobs" / "J" / "src")
    (dest / "README").write_text("changed by the build\n")
    (dest / "build-output.o").write_text("untracked\n")
    mirror.remove_worktree(dest)
    assert not dest.exists()
    assert worktrees(mirror) == []


def test_prune_forgets_a_worktree_whose_directory_was_deleted_by_hand(tmp_path, origin, mirror):
    sha = origin.commit({"README": "one\n"})
    dest = mirror.add_worktree(sha, tmp_path / "jobs" / "J" / "src")
    shutil.rmtree(dest)
    assert worktrees(mirror) == [str(dest)]  # git still remembers it
    mirror.prune()
    assert worktrees(mirror) == []
    assert mirror.add_worktree(sha, dest) == dest  # the same place can be used again


def test_remove_worktree_of_a_directory_already_gone_only_prunes(tmp_path, origin, mirror):
    sha = origin.commit({"README": "one\n"})
    dest = mirror.add_worktree(sha, tmp_path / "jobs" / "J" / "src")
    shutil.rmtree(dest)
    mirror.remove_worktree(dest)
    assert worktrees(mirror) == []


def test_remove_worktree_refuses_a_directory_that_is_not_one_of_its_worktrees(tmp_path, origin, mirror):
    origin.commit({"README": "one\n"})
    mirror.update()
    stranger = tmp_path / "not-a-worktree"
    stranger.mkdir()
    (stranger / "keep.txt").write_text("mine\n")
    with pytest.raises(GitError):
        mirror.remove_worktree(stranger)
    assert (stranger / "keep.txt").exists()


def test_a_repository_that_cannot_be_cloned_leaves_no_mirror(tmp_path):
    mirror = Mirror(tmp_path / "workdir", str(tmp_path / "nonexistent.git"))
    with pytest.raises(GitError) as failed:
        mirror.update()
    assert failed.value.exit_code == 4
    assert not mirror.path.exists() and not mirror.path.with_name(mirror.path.name + ".new").exists()


def test_a_leftover_of_a_crashed_clone_is_replaced(origin, mirror):
    sha = origin.commit({"README": "one\n"})
    staging = mirror.path.with_name(mirror.path.name + ".new")
    staging.mkdir(parents=True)
    (staging / "half").write_text("a clone that was killed\n")
    mirror.update()
    assert not staging.exists() and git("rev-parse", "main", cwd=mirror.path) == sha


UPDATER = "import sys; from trivialci.git.mirror import Mirror; Mirror(sys.argv[1], sys.argv[2]).update()"


def blocked_on(lock_path: Path) -> set[int]:
    """Pids waiting for a flock on `lock_path`: the '->' lines of /proc/locks for its inode."""
    inode = f":{os.stat(lock_path).st_ino} "
    waiting = set()
    for line in Path("/proc/locks").read_text().splitlines():
        fields = line.split()
        if "->" in fields and inode in line:
            waiting.add(int(fields[fields.index("->") + 4]))
    return waiting


def test_concurrent_updates_from_two_processes_take_turns_and_both_succeed(tmp_path, origin, mirror):
    sha = origin.commit({"README": "one\n"})
    mirror.lock_path.parent.mkdir(parents=True)
    held = os.open(mirror.lock_path, os.O_RDWR | os.O_CREAT)
    fcntl.flock(held, fcntl.LOCK_EX)  # as if a third update were under way
    updaters = [subprocess.Popen([sys.executable, "-c", UPDATER, str(mirror.workdir), str(origin.bare)],
                                 stderr=subprocess.PIPE, text=True, cwd=ROOT) for _ in range(2)]
    try:
        wait_for(lambda: {u.pid for u in updaters} <= blocked_on(mirror.lock_path),
                 message="both updaters to wait for the lock")
        assert not mirror.path.exists()
    finally:
        os.close(held)
        errors = [u.communicate(timeout=60)[1] for u in updaters]
    assert [u.returncode for u in updaters] == [0, 0], errors
    assert git("rev-parse", "main", cwd=mirror.path) == sha
    assert git("fsck", "--no-progress", cwd=mirror.path, check=False) == ""


@pytest.fixture
def git_calls(tmp_path, monkeypatch):
    """Every git command this process runs, as argument lines (git itself still does the work)."""
    calls, wrapper = tmp_path / "git-calls", tmp_path / "bin" / "git"
    real = shutil.which("git")
    wrapper.parent.mkdir()
    wrapper.write_text(f'#!/bin/sh\necho "$*" >> "{calls}"\nexec "{real}" "$@"\n')
    wrapper.chmod(0o755)
    monkeypatch.setenv("PATH", f"{wrapper.parent}{os.pathsep}{os.environ['PATH']}")

    def taken():
        lines = calls.read_text().splitlines() if calls.exists() else []
        calls.unlink(missing_ok=True)
        return lines
    return taken


def test_a_job_checkout_and_removal_with_nothing_stale_run_no_worktree_prune(tmp_path, origin, mirror, git_calls):
    sha = origin.commit({"README": "one\n"})
    mirror.update()
    git_calls()
    mirror.prune()
    dest = mirror.add_worktree(sha, tmp_path / "jobs" / "J" / "src")
    mirror.remove_worktree(dest)
    assert not [line for line in git_calls() if line.startswith("worktree prune")]
    assert worktrees(mirror) == []


def test_reading_a_commit_the_mirror_has_is_one_git_process(origin, mirror, git_calls):
    sha = origin.commit({".trivialci/build": "#!/bin/sh\n"})
    mirror.update()
    git_calls()
    assert mirror.list_dir(sha, ".trivialci") == ["build"]
    assert [line.split()[0] for line in git_calls()] == ["ls-tree"]  # no cat-file to look for the commit first


def test_a_checkout_of_a_commit_the_mirror_has_is_one_git_process(tmp_path, origin, mirror, git_calls):
    sha = origin.commit({"README": "one\n"})
    mirror.update()  # the hub's fetch of a push, in a mirror it shares with the worker
    git_calls()
    mirror.add_worktree(sha, tmp_path / "jobs" / "J" / "src")
    assert [line.split()[2] for line in git_calls()] == ["worktree"]  # -c core.hooksPath=… worktree add


def test_a_fetch_starts_no_maintenance_of_its_own(tmp_path, origin, mirror, monkeypatch):
    origin.commit({"README": "one\n"})
    mirror.update()
    origin.commit({"README": "two\n"})
    trace = tmp_path / "git-trace"
    monkeypatch.setenv("GIT_TRACE", str(trace))  # git says there what it runs, its own children too
    mirror.update()
    started = [line for line in trace.read_text().splitlines() if "run_command:" in line]
    assert started and not [line for line in started if "maintenance" in line or " gc" in line]
