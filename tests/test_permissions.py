"""What the CI creates is private to its user, or shared with the group named by --group; never world-readable.

Each command sets its own umask (077, or 007 with a group), so a CI started
from a shell or a unit with umask 000 still makes nothing that others can read
or write; an emitter (a hook) that never heard of the group writes events the
hub can read. The tests across users run as root, with `setpriv` to be
`nobody` with or without the group.
"""

import grp
import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path

import pytest
from conftest import events_in, records, run_cli, wait_for, write_script
from gitrepo import Origin

import trivialci
from trivialci.up import local_worker_pids

BUILD = "#!/bin/sh\necho building\necho made > \"$TRIVIALCI_ARTIFACTS/out.txt\"\nmkdir -p \"$TRIVIALCI_ARTIFACTS/sub\"\n" \
        "echo deeper > \"$TRIVIALCI_ARTIFACTS/sub/more.txt\"\n"
ROOT_ONLY = pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("setpriv"),
                               reason="needs root and setpriv (util-linux) to act as another user and group")


@contextmanager
def umask(mask: int):
    """Children started inside inherit `mask`, as from a shell that ran `umask 000`."""
    previous = os.umask(mask)
    try:
        yield
    finally:
        os.umask(previous)


def entries(*roots: Path):
    """Every file and directory under the roots (the roots too); links are left out (their mode means nothing)."""
    for root in roots:
        yield root, root.lstat()
        for directory, names, files in os.walk(root):
            for name in names + files:
                path = Path(directory) / name
                info = path.lstat()
                if not stat.S_ISLNK(info.st_mode):
                    yield path, info


def too_open(found, forbidden: int) -> list[str]:
    return [f"{oct(stat.S_IMODE(info.st_mode))} {path}" for path, info in found if info.st_mode & forbidden]


def made_by_the_ci(roots, origin: Origin) -> list:
    """Every entry under the roots but the origin's object files, which git's clone of a local path
    hardlinks into the mirror: they are the origin's files, with the origin's modes and group."""
    theirs = {(info.st_dev, info.st_ino) for _, info in entries(origin.bare / "objects")}
    return [(path, info) for path, info in entries(*roots) if (info.st_dev, info.st_ino) not in theirs]


def origin_with_build(tmp_path: Path) -> Origin:
    origin = Origin(tmp_path / "repo")
    origin.commit({".trivialci/build": BUILD}, push=False)
    (origin.work / ".trivialci" / "build").chmod(0o755)
    origin.commit({})
    return origin


@contextmanager
def running_up(start_node, origin, tmp_path, *options):
    spool, store, workdir = tmp_path / "spool", tmp_path / "store", tmp_path / "ciwork"
    with umask(0):
        up = start_node("up", "--repo", origin.bare, "--spool", spool, "--store", f"file://{store}",
                        "--workdir", workdir, "--ui", "off", *options)
    try:
        wait_for(lambda: list(store.glob("jobs/*/job.json")), timeout=90, message="the first job's record")
        wait_for(lambda: "PASSED" in next(store.glob("jobs/*/job.json")).read_text(), message="PASSED")
        yield spool, store, workdir
    finally:
        if up.proc.poll() is None:
            up.stop(signal.SIGINT, timeout=60)
        for pid in local_worker_pids(spool):
            os.kill(pid, signal.SIGKILL)
    assert up.proc.returncode == 0, up.stderr()


def test_up_under_umask_000_creates_nothing_that_others_or_the_group_can_read(tmp_path, start_node):
    origin = origin_with_build(tmp_path)
    with running_up(start_node, origin, tmp_path) as roots:
        assert (roots[0] / "workers" / "build-1" / "worker.json").exists()
        assert too_open(made_by_the_ci(roots, origin), 0o077) == [], "while it runs"
    found = made_by_the_ci(roots, origin)
    assert too_open(found, 0o077) == [], "after it stopped"
    assert len(found) > 50, "a build's worth of files was checked"


@ROOT_ONLY
def test_up_with_a_group_shares_every_file_with_it_and_nothing_with_others(tmp_path, start_node):
    origin = origin_with_build(tmp_path)
    group = grp.getgrnam("users")
    with running_up(start_node, origin, tmp_path, "--group", "users") as roots:
        assert (roots[0] / "workers" / "build-1" / "worker.json").exists()
    found = made_by_the_ci(roots, origin)
    assert too_open(found, 0o007) == []
    assert [str(path) for path, info in found if info.st_gid != group.gr_gid] == []
    assert [str(path) for path, info in found if stat.S_ISDIR(info.st_mode)
            and info.st_mode & 0o2070 != 0o2070] == [], "every directory: group rwx and setgid"


def test_emit_under_umask_000_makes_private_directories_and_files(tmp_path):
    with umask(0):
        delivered = run_cli("emit", "hello", "{}", "--spool", tmp_path / "cli-spool")
        in_process = trivialci.emit("hello", {}, spool=tmp_path / "lib-spool")
    assert delivered.returncode == 0, delivered.stderr
    assert too_open(entries(tmp_path / "cli-spool", tmp_path / "lib-spool"), 0o077) == []
    assert stat.S_IMODE(in_process.stat().st_mode) == 0o600


def test_a_group_that_does_not_exist_is_refused_in_one_line(tmp_path):
    refused = run_cli("hub", "--spool", tmp_path / "spool", "--group", "no-such-group-here", "--drain")
    assert refused.returncode == 2 and len(refused.stderr.splitlines()) == 1
    assert "no group 'no-such-group-here'" in refused.stderr and not (tmp_path / "spool").exists()


@pytest.fixture
def shared_dir():
    """A directory outside pytest's private tmp tree, which other users may enter (not list)."""
    directory = Path(tempfile.mkdtemp(prefix="trivialci-perm-"))
    directory.chmod(0o711)
    yield directory
    shutil.rmtree(directory)


def as_nobody(*argv, groups: str | None, timeout: float = 60) -> subprocess.CompletedProcess:
    """`python -m trivialci ARGV` as the user nobody, in `groups` only (None: in none)."""
    group_option = f"--groups={groups}" if groups else "--clear-groups"
    return subprocess.run(["setpriv", "--reuid=nobody", "--regid=nogroup", group_option, sys.executable, "-m",
                           "trivialci", *map(str, argv)], capture_output=True, text=True, timeout=timeout, cwd="/",
                          env={**os.environ, "HOME": "/"})


@ROOT_ONLY
def test_a_member_of_the_group_emits_and_reads_status_and_others_cannot(tmp_path, shared_dir, start_node):
    spool, pipeline = shared_dir / "spool", tmp_path / "pipeline"
    write_script(pipeline, "hello.py", "print('hello')\n")
    users = grp.getgrnam("users").gr_gid
    start_node("hub", "--spool", spool, "--pipeline", pipeline, "--group", "users")
    wait_for((spool / "hub.json").exists, message="the hub's heartbeat")

    emitted = as_nobody("emit", "hello", "{}", "--spool", spool, groups=str(users))  # as a post-receive hook would
    assert emitted.returncode == 0, emitted.stderr
    [done] = wait_for(lambda: events_in(spool, "done"), message="the member's event to be handled")
    assert (done.stat().st_uid, done.stat().st_gid, stat.S_IMODE(done.stat().st_mode)) == (65534, users, 0o640)
    shown = as_nobody("status", "--spool", spool, groups=str(users))
    assert shown.returncode == 0 and "up, pid" in shown.stdout, shown.stdout + shown.stderr

    outsider = as_nobody("emit", "hello", "{}", "--spool", spool, groups=None)
    assert outsider.returncode != 0 and "not readable" in outsider.stderr, outsider.stderr
    looked = as_nobody("status", "--spool", spool, groups=None)
    assert looked.returncode == 2 and "is not readable" in looked.stderr and len(looked.stderr.splitlines()) == 1
    peek = subprocess.run(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "cat",
                           spool / "hub.json"], capture_output=True, text=True)
    assert peek.returncode != 0 and peek.stdout == ""
    assert too_open(entries(spool), 0o007) == []


@ROOT_ONLY
def test_an_event_the_node_may_not_read_is_refused_not_held_forever(shared_dir):
    spool, pipeline = shared_dir / "spool", shared_dir / "pipeline"
    write_script(pipeline, "hello", "#!/bin/sh\necho hello\n", executable=True)
    pipeline.chmod(0o755)
    (spool / "inbox").mkdir(parents=True)
    for path in (spool, spool / "inbox"):
        os.chown(path, 65534, 65534)
    unreadable, readable = spool / "inbox" / "hello.a.json", spool / "inbox" / "hello.b.json"
    unreadable.write_text("{}")
    unreadable.chmod(0o600)  # root's, as a member with umask 077 would leave it
    readable.write_text("{}")
    readable.chmod(0o644)

    drained = subprocess.run(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", sys.executable,
                              "-m", "trivialci", "hub", "--spool", spool, "--pipeline", pipeline, "--drain"],
                             capture_output=True, text=True, timeout=60, cwd="/")
    assert drained.returncode == 0, drained.stderr
    [refused] = records(spool, "failed")
    assert refused["event"] == "hello.a.json" and "may not read the event file" in refused["reason"]
    assert [r["event"] for r in records(spool, "done")] == ["hello.b.json"]
