"""What a store is given to keep is hostile: only regular files physically under the root are stored.

A build (or anyone who can write its artifacts directory) can replace a file
with a symlink to a key, a directory with a link to ~/.ssh, or the whole
artifacts directory with one, and it can keep doing so while the upload runs.
Every test that takes the `store` fixture runs once per backend, like the
contract suite in test_store.py; then retries' files and staged-file reaping.
"""

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from conftest import wait_for
from test_store import directory_store, store, tree_of  # noqa: F401 (store is a fixture)

from trivialci.errors import BadInput
from trivialci.store import DirectoryStore

SECRET = b"-----BEGIN OPENSSH PRIVATE KEY----- not for the store"


def without_waiting(call, timeout=10.0):
    """call(), failing the test if it blocks (on a FIFO) instead of returning or raising."""
    outcome = []

    def run():
        try:
            outcome.append(("value", call()))
        except BaseException as error:  # noqa: B902 (handed to the test's thread)
            outcome.append(("error", error))

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        pytest.fail(f"{call} waited on a special file")
    kind, value = outcome[0]
    if kind == "error":
        raise value
    return value


@pytest.fixture
def home(tmp_path) -> Path:
    """A home directory with a private key: what a link planted by a build points to."""
    ssh = tmp_path / "home" / ".ssh"
    ssh.mkdir(parents=True)
    (ssh / "id_ed25519").write_bytes(SECRET)
    return tmp_path / "home"


def stored_values(store) -> dict[str, bytes]:
    return {key: store.get_bytes(key) for key in store.list_keys("")}


# --- put_file ----------------------------------------------------------------------------------

def test_put_file_stores_what_an_open_file_reads(store, tmp_path):
    data = os.urandom(2 * 1024 * 1024 + 3)
    (tmp_path / "artifact.bin").write_bytes(data)
    with open(tmp_path / "artifact.bin", "rb") as source:
        store.put_file("jobs/a/files/artifact.bin", source)
    assert store.get_bytes("jobs/a/files/artifact.bin") == data


def test_put_file_refuses_a_link_and_does_not_wait_on_a_fifo(store, tmp_path, home):
    (tmp_path / "log.txt").symlink_to(home / ".ssh" / "id_ed25519")
    with pytest.raises(BadInput, match="not a regular file"):
        store.put_file("jobs/a/log.txt", tmp_path / "log.txt")
    os.mkfifo(tmp_path / "fifo")
    with pytest.raises(BadInput, match="not a regular file"):
        without_waiting(lambda: store.put_file("jobs/a/fifo", tmp_path / "fifo"))
    assert store.list_keys("") == []


# --- put_tree ----------------------------------------------------------------------------------

def test_an_artifacts_directory_that_is_a_link_stores_nothing(store, tmp_path, home):
    (tmp_path / "artifacts").symlink_to(home / ".ssh", target_is_directory=True)
    with pytest.raises(BadInput, match="symlink"):
        store.put_tree("jobs/a/files", tmp_path / "artifacts")
    assert store.list_keys("") == []


def test_put_tree_takes_an_open_directory_and_stores_only_what_is_under_it(store, tmp_path, home):
    artifacts = tmp_path / "artifacts"
    (artifacts / "sub").mkdir(parents=True)
    (artifacts / "sub" / "report.txt").write_text("made")
    (artifacts / "keys").symlink_to(home / ".ssh", target_is_directory=True)
    os.mkfifo(artifacts / "pipe")
    fd = os.open(artifacts, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.rename(artifacts, tmp_path / "moved")  # what the descriptor holds is what is stored
        (tmp_path / "artifacts").symlink_to(home, target_is_directory=True)
        keys = without_waiting(lambda: store.put_tree("jobs/a/files", fd))
    finally:
        os.close(fd)
    assert keys == ["jobs/a/files/sub/report.txt"]
    assert stored_values(store) == {"jobs/a/files/sub/report.txt": b"made"}


SWAPPER = Path(__file__).with_name("link_swapper.py")


def start_swapper(tmp_path: Path, home: Path, files: int, swap_directory: bool) -> tuple[Path, subprocess.Popen, Path]:
    """A process that keeps swapping each file under artifacts/ for a link to the key (and sub/ for a link)."""
    artifacts, staging, stop = tmp_path / "artifacts", tmp_path / "staging", tmp_path / "stop"
    (artifacts / "sub").mkdir(parents=True)
    (artifacts / "sub" / "inside.txt").write_bytes(b"artifact")
    swapper = subprocess.Popen([sys.executable, SWAPPER, artifacts, staging, home / ".ssh" / "id_ed25519", stop,
                                str(files), "yes" if swap_directory else "no"])
    wait_for(lambda: (staging / "started").exists(), message="the swapper to start")
    return artifacts, swapper, stop


@pytest.mark.parametrize("swap_directory", [False, True], ids=["files", "and-a-directory"])
def test_files_swapped_for_links_while_put_tree_runs_never_store_what_the_links_point_to(store, tmp_path, home,
                                                                                        swap_directory):
    artifacts, swapper, stop = start_swapper(tmp_path, home, files=30, swap_directory=swap_directory)
    stored, deadline = 0, time.monotonic() + 3
    try:
        for round in range(1000):
            if time.monotonic() > deadline:
                break
            stored += len(store.put_tree(f"jobs/r{round}/files", artifacts))
    finally:
        stop.touch()
        swapper.wait(30)
    values = stored_values(store)
    assert stored and len(values) == stored
    assert set(values.values()) == {b"artifact"}, "a link's target was stored"


# --- a retry's files ---------------------------------------------------------------------------

def test_delete_tree_removes_the_keys_under_a_prefix_only(store):
    for key in ("jobs/a/files/x", "jobs/a/files/deep/y", "jobs/a/job.json", "jobs/ab/files/z", "jobs/a/filesx"):
        store.put_bytes(key, b"v")
    store.delete_tree("jobs/a/files")
    assert store.list_keys("") == ["jobs/a/filesx", "jobs/a/job.json", "jobs/ab/files/z"]
    store.delete_tree("jobs/nothing/files/")
    with pytest.raises(BadInput):
        store.delete_tree("")


def test_delete_tree_does_not_follow_a_link_in_a_directory_store(tmp_path, home):
    store = directory_store(tmp_path)
    store.put_bytes("jobs/a/files/x", b"v")
    (store.root / "jobs" / "a" / "files" / "keys").symlink_to(home / ".ssh", target_is_directory=True)
    store.delete_tree("jobs/a/files/")
    assert (home / ".ssh" / "id_ed25519").read_bytes() == SECRET
    assert store.list_keys("") == [] and not (store.root / "jobs" / "a" / "files" / "keys").is_symlink()


# --- staged files ------------------------------------------------------------------------------

def test_staged_files_older_than_a_day_are_reaped_at_the_next_put(tmp_path):
    store = directory_store(tmp_path)
    store.put_bytes("jobs/a/job.json", b"{}")
    stale, fresh = store.root / ".tmp" / ".1.dead.tmp", store.root / ".tmp" / ".2.live.tmp"
    stale.write_bytes(b"half a put that crashed")
    fresh.write_bytes(b"a put under way")
    os.utime(stale, (time.time() - 86400 - 60,) * 2)
    DirectoryStore(store.root).put_bytes("jobs/b/job.json", b"{}")
    assert sorted(os.listdir(store.root / ".tmp")) == [".2.live.tmp"]
    assert tree_of(store.root)["jobs/b/job.json"] == b"{}"
