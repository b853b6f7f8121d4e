"""The artifact store's contract, run against every backend; then what only the directory backend can get wrong.

Every test that takes the `store` fixture runs once per backend in STORE_BACKENDS.
"""

import os
import re
import socket
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from trivialci.errors import BadInput
from trivialci.store import READ_CHUNK, ArtifactStore, DirectoryStore, StoreMissing, StoreUnavailable, open_store


def directory_store(tmp_path: Path) -> ArtifactStore:
    (tmp_path / "store").mkdir()
    return open_store((tmp_path / "store").as_uri())


def s3_store(request) -> ArtifactStore:
    """A fresh bucket on the session's moto server, under a prefix (so that the prefix is joined too)."""
    request.getfixturevalue("s3_env")  # this process and the writers it starts reach that server
    return open_store(f"s3://{request.getfixturevalue('s3_server').new_bucket()}/ci")


# A backend joins the contract suite with one line here: name -> factory(request) -> a new, empty store
# (request.getfixturevalue gives a factory tmp_path, or a server it needs).
STORE_BACKENDS = {
    "directory": lambda request: directory_store(request.getfixturevalue("tmp_path")),
    "s3": s3_store,
}


@pytest.fixture(params=sorted(STORE_BACKENDS))
def store(request) -> ArtifactStore:
    return STORE_BACKENDS[request.param](request)


def tree_of(root: Path) -> dict[str, bytes | str]:
    """Everything under `root`: files with their bytes, links with their targets, directories as '/'."""
    found = {}
    for parent, directories, files in os.walk(root):
        for name in directories + files:
            path = Path(parent, name)
            relative = str(path.relative_to(root))
            if path.is_symlink():
                found[relative] = "-> " + os.readlink(path)
            else:
                found[relative] = "/" if path.is_dir() else path.read_bytes()
    return found


# --- the contract ----------------------------------------------------------------------------

def test_bytes_come_back_as_they_were_put(store):
    every_byte = bytes(range(256)) * 3
    store.put_bytes("jobs/a/log.txt", every_byte)
    store.put_bytes("jobs/a/empty", b"")
    assert store.get_bytes("jobs/a/log.txt") == every_byte
    assert store.get_bytes("jobs/a/empty") == b""


def test_a_file_comes_back_as_it_was_put(store, tmp_path):
    big = os.urandom(3 * 1024 * 1024 + 17)  # over the copy buffer: the copy is streamed in parts
    source = tmp_path / "artifact.bin"
    source.write_bytes(big)
    store.put_file("jobs/a/files/artifact.bin", source)
    store.put_file("jobs/a/files/by-str-path", str(source))
    assert store.get_bytes("jobs/a/files/artifact.bin") == big
    assert store.get_bytes("jobs/a/files/by-str-path") == big


def test_a_missing_source_file_is_refused_as_bad_input(store, tmp_path):
    with pytest.raises(BadInput, match="cannot read .*nothing-here"):
        store.put_file("jobs/a/x", tmp_path / "nothing-here")
    assert store.list_keys("") == []


def test_a_put_replaces_the_value(store):
    store.put_bytes("jobs/a/job.json", b"first, and longer")
    store.put_bytes("jobs/a/job.json", b"second")
    assert store.get_bytes("jobs/a/job.json") == b"second"
    assert store.list_keys("jobs/") == ["jobs/a/job.json"]


def test_exists_is_true_for_keys_only(store):
    assert not store.exists("jobs/a/job.json")
    store.put_bytes("jobs/a/job.json", b"{}")
    assert store.exists("jobs/a/job.json")
    assert not store.exists("jobs/a"), "a prefix is not a key"
    assert not store.exists("jobs/a/job.json/deeper")


def test_a_missing_key_raises_store_missing_naming_the_key_and_the_store(store):
    store.put_bytes("jobs/a/job.json", b"{}")
    for key in ("jobs/a/log.txt", "jobs/nope/job.json", "jobs/a", "jobs/a/job.json/deeper"):
        with pytest.raises(StoreMissing) as caught:
            store.get_bytes(key)
        assert caught.value.exit_code == 2
        assert key in str(caught.value) and store.url in str(caught.value)
        assert "check" in str(caught.value)


def fill(store: ArtifactStore) -> None:
    for key in ("jobs/b/job.json", "jobs/a/log.txt", "jobs/a/job.json", "jobs/c/files/x/y.txt",
                "jobs/ab/job.json", "top.txt"):
        store.put_bytes(key, key.encode())


def test_list_children_lists_one_level_sorted_and_deduplicated(store):
    fill(store)
    assert store.list_children("jobs/") == ["a", "ab", "b", "c"]
    assert store.list_children("jobs") == ["a", "ab", "b", "c"], "the trailing '/' is optional"
    assert store.list_children("jobs/a/") == ["job.json", "log.txt"]
    assert store.list_children("jobs/c/") == ["files"]
    assert store.list_children("") == ["jobs", "top.txt"], "the backend's own names are not listed"
    assert store.list_children("nothing/") == []
    assert store.list_children("top.txt/") == [], "nothing is under a key"


def test_list_keys_lists_whole_keys_below_a_prefix_sorted(store):
    fill(store)
    assert store.list_keys("jobs/a") == ["jobs/a/job.json", "jobs/a/log.txt"], "jobs/a does not cover jobs/ab"
    assert store.list_keys("jobs/c/") == ["jobs/c/files/x/y.txt"]
    assert store.list_keys("") == sorted(["jobs/b/job.json", "jobs/a/log.txt", "jobs/a/job.json",
                                          "jobs/c/files/x/y.txt", "jobs/ab/job.json", "top.txt"])
    assert store.list_keys("nothing") == []


def test_a_fresh_store_lists_nothing(store):
    assert store.list_children("jobs/") == []
    assert store.list_keys("") == []


def test_put_tree_stores_every_regular_file_and_returns_the_keys(store, tmp_path):
    artifacts = tmp_path / "artifacts"
    (artifacts / "reports" / "deep").mkdir(parents=True)
    (artifacts / "empty-directory").mkdir()
    (artifacts / "app.bin").write_bytes(b"\x00binary")
    (artifacts / ".hidden").write_text("dot-files are artifacts too")
    (artifacts / "reports" / "deep" / "junit.xml").write_text("<testsuite/>")
    secret = tmp_path / "secret"
    secret.write_text("a key the build did not mean to publish")
    (artifacts / "link-to-secret").symlink_to(secret)
    (artifacts / "link-to-directory").symlink_to(tmp_path, target_is_directory=True)

    keys = store.put_tree("jobs/a/files", artifacts)

    assert keys == ["jobs/a/files/.hidden", "jobs/a/files/app.bin", "jobs/a/files/reports/deep/junit.xml"]
    assert store.list_keys("jobs/a/") == keys, "links are neither followed nor stored"
    assert store.get_bytes("jobs/a/files/reports/deep/junit.xml") == b"<testsuite/>"
    assert store.put_tree("jobs/b/files/", artifacts / "empty-directory") == []


def test_put_tree_refuses_a_missing_directory(store, tmp_path):
    with pytest.raises(BadInput, match="no directory"):
        store.put_tree("jobs/a/files", tmp_path / "nothing-here")


def test_put_tree_checks_every_name_before_storing_any(store, tmp_path):
    artifacts = tmp_path / "artifacts"
    artifacts.mkdir()
    (artifacts / "a-good-name").write_text("x")
    (artifacts / "a\nnewline").write_text("x")
    with pytest.raises(BadInput, match="control character"):
        store.put_tree("jobs/a/files", artifacts)
    assert store.list_keys("") == []


HOSTILE_KEYS = {
    "parent": "../x",
    "absolute": "/etc/passwd",
    "climbing": "a/../../b",
    "double_slash": "a//b",
    "empty": "",
    "dot_segment": "a/./b",
    "nul": "a/b\x00c",
    "newline": "jobs/a\n/job.json",
    "escape": "jobs/\x1b[31m/x",
    "trailing_slash": "jobs/a/",
    "just_dotdot": "..",
    "reserved_first_segment": ".tmp/x",
    "too_long": "a/" + "x" * 1100,
    "too_long_segment": "a/" + "x" * 256,
    "not_utf8": "a/\udcff",
}


@pytest.mark.parametrize("key", HOSTILE_KEYS.values(), ids=HOSTILE_KEYS.keys())
def test_hostile_keys_are_refused_and_nothing_is_written(store, tmp_path, key):
    source = tmp_path / "source"
    source.write_bytes(b"payload")
    before = tree_of(tmp_path)
    for attempt in (lambda: store.put_bytes(key, b"payload"), lambda: store.put_file(key, source),
                    lambda: store.get_bytes(key), lambda: store.exists(key)):
        with pytest.raises(BadInput, match="bad artifact store key"):
            attempt()
    assert tree_of(tmp_path) == before
    assert Path("/etc/passwd").read_bytes() != b"payload"


@pytest.mark.parametrize("prefix", ["../", "/etc", "a/../../", "a//", "/", "a/./", "\n/", "../..", ".tmp/"])
def test_hostile_prefixes_are_refused(store, tmp_path, prefix):
    artifacts = tmp_path / "artifacts"
    artifacts.mkdir()
    (artifacts / "file").write_text("x")
    before = tree_of(tmp_path)
    for attempt in (store.list_children, store.list_keys, lambda p: store.put_tree(p, artifacts)):
        with pytest.raises(BadInput, match="bad artifact store key"):
            attempt(prefix)
    assert tree_of(tmp_path) == before


WRITER = """
import sys
from trivialci.store import open_store
store, size = open_store(sys.argv[1]), int(sys.argv[2])
for round in range(int(sys.argv[3])):
    store.put_bytes("jobs/a/job.json", bytes([round]) * (size + round))
print("done", flush=True)
"""


def test_a_reader_sees_whole_values_only_while_another_process_overwrites(store):
    """Write ROUND is bytes([ROUND]) * (SIZE + ROUND); the first value is bytes([250]) * SIZE."""
    size, rounds = 200_000, 120
    store.put_bytes("jobs/a/job.json", bytes([250]) * size)
    writer = subprocess.Popen([sys.executable, "-c", WRITER, store.url, str(size), str(rounds)],
                              stdout=subprocess.PIPE, text=True)
    reads = 0
    try:
        while writer.poll() is None or not reads:
            value = store.get_bytes("jobs/a/job.json")
            assert value == value[:1] * len(value), "a value mixed two writes"
            assert len(value) == (size if value[0] == 250 else size + value[0]), "a value was cut short"
            reads += 1
    finally:
        writer.wait(60)
    assert writer.returncode == 0 and writer.stdout.read() == "done\n"
    assert store.get_bytes("jobs/a/job.json") == bytes([rounds - 1]) * (size + rounds - 1)


def test_delete_removes_a_key_and_a_missing_key_is_no_error(store):
    store.put_bytes("jobs/a/job.json", b"{}")
    store.put_bytes("jobs/a/log.txt", b"log")
    store.delete("jobs/a/job.json")
    store.delete("jobs/a/job.json")
    store.delete("jobs/never/job.json")
    assert not store.exists("jobs/a/job.json")
    assert store.list_keys("jobs/") == ["jobs/a/log.txt"]
    with pytest.raises(StoreMissing):
        store.get_bytes("jobs/a/job.json")


def test_delete_prefix_removes_what_is_under_it_and_nothing_beside(store):
    for key in ("jobs/a/job.json", "jobs/a/log.txt", "jobs/a/files/x/y.bin", "jobs/ab/job.json", "jobs/b/job.json"):
        store.put_bytes(key, b"value")
    assert store.delete_prefix("jobs/a/") == 3
    assert store.list_keys("") == ["jobs/ab/job.json", "jobs/b/job.json"]
    assert store.list_children("jobs/") == ["ab", "b"]
    assert store.delete_prefix("jobs/a") == 0
    with pytest.raises(BadInput, match="whole artifact store"):
        store.delete_prefix("")
    assert store.list_keys("") == ["jobs/ab/job.json", "jobs/b/job.json"]


def test_delete_keys_removes_each_key_given(store):
    keys = [f"jobs/{n:03d}/job.json" for n in range(30)]
    for key in keys:
        store.put_bytes(key, b"{}")
    assert store.delete_keys(keys[:20] + ["jobs/zzz/job.json"]) == 21
    assert store.list_keys("jobs/") == keys[20:]


def test_usage_counts_the_keys_and_bytes_under_a_prefix(store):
    store.put_bytes("jobs/a/job.json", b"12345")
    store.put_bytes("jobs/a/files/f", b"x" * 1000)
    store.put_bytes("jobs/b/job.json", b"1")
    assert store.usage("jobs/a/") == (2, 1005)
    assert store.usage("") == (3, 1006)
    assert store.usage("jobs/none/") == (0, 0)
    assert store.key_sizes("jobs/") == {"jobs/a/files/f": 1000, "jobs/a/job.json": 5, "jobs/b/job.json": 1}


@pytest.mark.parametrize("key", HOSTILE_KEYS.values(), ids=HOSTILE_KEYS.keys())
def test_hostile_keys_are_refused_by_deletes(store, key):
    store.put_bytes("jobs/a/job.json", b"{}")
    for attempt in (lambda: store.delete(key), lambda: store.delete_keys(["jobs/a/job.json", key])):
        with pytest.raises(BadInput, match="bad artifact store key"):
            attempt()
    assert store.exists("jobs/a/job.json"), "a refused batch removes nothing"


def read_value(store: ArtifactStore, key: str, first: int = 0, last: int | None = None) -> tuple[int, list[bytes]]:
    with store.open_value(key) as value:
        return value.size, list(value.chunks(first, last))


def test_a_value_is_streamed_in_bounded_chunks_whole_or_from_any_byte(store, tmp_path):
    big = os.urandom(3 * READ_CHUNK + 12345)
    (tmp_path / "big.bin").write_bytes(big)
    store.put_file("jobs/a/files/big.bin", tmp_path / "big.bin")
    size, chunks = read_value(store, "jobs/a/files/big.bin")
    assert size == len(big) and b"".join(chunks) == big
    assert max(map(len, chunks)) <= READ_CHUNK, "no chunk larger than READ_CHUNK: memory stays bounded"
    for first, last in ((0, 0), (100, 199), (READ_CHUNK - 1, READ_CHUNK + 1), (len(big) - 7, None),
                        (len(big) - 7, len(big) - 1), (5, len(big) * 2)):
        size, chunks = read_value(store, "jobs/a/files/big.bin", first, last)
        expected = big[first:(len(big) if last is None else last + 1)]
        assert size == len(big) and b"".join(chunks) == expected, (first, last)


def test_an_empty_value_streams_nothing_and_a_missing_one_is_store_missing(store):
    store.put_bytes("jobs/a/empty", b"")
    assert read_value(store, "jobs/a/empty") == (0, [])
    with pytest.raises(StoreMissing, match="jobs/a/nothing"):
        store.open_value("jobs/a/nothing")
    with pytest.raises(BadInput):
        store.open_value("../etc/passwd")


def test_a_value_being_read_is_never_mixed_with_the_next_put(store):
    old, new = b"o" * (2 * READ_CHUNK), b"n" * (3 * READ_CHUNK)
    store.put_bytes("jobs/a/log.txt", old)
    for first in (0, 10):
        with store.open_value("jobs/a/log.txt") as value:
            store.put_bytes("jobs/a/log.txt", new)
            try:
                data = b"".join(value.chunks(first))
            except StoreUnavailable as error:  # a backend that cannot keep to the old value says so
                assert "jobs/a/log.txt" in str(error)
                data = old[first:]
        assert data == old[first:], "the value opened, whole: never a mix of two puts"
        store.put_bytes("jobs/a/log.txt", old)


# --- the directory backend -------------------------------------------------------------------

@pytest.fixture
def directory(tmp_path) -> DirectoryStore:
    store = directory_store(tmp_path)
    store.put_bytes("jobs/a/job.json", b"{}")
    return store


def test_the_layout_is_plain_files_under_the_directory(directory):
    assert (directory.root / "jobs" / "a" / "job.json").read_bytes() == b"{}"
    assert os.listdir(directory.root / ".tmp") == [], "nothing is left staged"


def test_a_key_under_a_symlink_out_of_the_store_is_refused(directory, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "job.json").write_bytes(b"planted")
    (directory.root / "jobs" / "evil").symlink_to(outside, target_is_directory=True)
    with pytest.raises(StoreUnavailable, match="jobs/evil .* is a symlink"):
        directory.put_bytes("jobs/evil/job.json", b"written through the link")
    with pytest.raises(StoreUnavailable, match="is a symlink"):
        directory.put_bytes("jobs/evil/new/deeper.txt", b"written through the link")
    with pytest.raises(StoreUnavailable, match="is a symlink"):
        directory.get_bytes("jobs/evil/job.json")
    with pytest.raises(StoreUnavailable, match="is a symlink"):
        directory.open_value("jobs/evil/job.json")
    with pytest.raises(StoreUnavailable, match="is a symlink"):
        directory.list_children("jobs/evil/")
    assert tree_of(outside) == {"job.json": b"planted"}
    assert directory.list_keys("") == ["jobs/a/job.json"], "a listing does not descend into links"


def test_a_symlink_at_a_key_is_replaced_never_written_through(directory, tmp_path):
    target = tmp_path / "target"
    target.write_bytes(b"not the store's")
    (directory.root / "jobs" / "a" / "log.txt").symlink_to(target)
    assert not directory.exists("jobs/a/log.txt")
    with pytest.raises(StoreUnavailable, match="not a regular file"):
        directory.get_bytes("jobs/a/log.txt")
    with pytest.raises(StoreUnavailable, match="not a regular file"):
        directory.open_value("jobs/a/log.txt")
    directory.put_bytes("jobs/a/log.txt", b"the log")
    assert target.read_bytes() == b"not the store's"
    assert directory.get_bytes("jobs/a/log.txt") == b"the log"


def test_a_symlinked_staging_directory_is_refused(directory, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    os.rmdir(directory.root / ".tmp")
    (directory.root / ".tmp").symlink_to(outside, target_is_directory=True)
    with pytest.raises(StoreUnavailable, match=r"\.tmp .* is a symlink"):
        directory.put_bytes("jobs/b/job.json", b"{}")
    assert os.listdir(outside) == []


def test_a_fifo_at_a_key_is_not_waited_on(directory):
    os.mkfifo(directory.root / "jobs" / "a" / "log.txt")
    with pytest.raises(StoreUnavailable, match="not a regular file"):
        directory.get_bytes("jobs/a/log.txt")
    with pytest.raises(StoreUnavailable, match="not a regular file"):
        directory.open_value("jobs/a/log.txt")


def test_the_store_directory_itself_may_be_a_symlink(tmp_path):
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "link").symlink_to(real, target_is_directory=True)
    store = open_store(tmp_path / "link")
    store.put_bytes("jobs/a/job.json", b"{}")
    assert (real / "jobs" / "a" / "job.json").read_bytes() == b"{}"


def test_a_staged_file_never_appears_under_its_key(directory, monkeypatch):
    """Look at the store while each put fsyncs its staged file, just before the rename."""
    seen_while_staged = []
    real_fsync = os.fsync

    def looking_fsync(fd):
        if stat.S_ISREG(os.fstat(fd).st_mode):
            seen_while_staged.append((directory.get_bytes("jobs/a/job.json"), directory.exists("jobs/b/job.json"),
                                      directory.list_keys(""), len(os.listdir(directory.root / ".tmp"))))
        return real_fsync(fd)

    monkeypatch.setattr(os, "fsync", looking_fsync)
    directory.put_bytes("jobs/a/job.json", b'{"new": 1}')
    directory.put_bytes("jobs/b/job.json", b'{"new": 2}')
    monkeypatch.undo()
    assert seen_while_staged == [(b"{}", False, ["jobs/a/job.json"], 1),
                                 (b'{"new": 1}', False, ["jobs/a/job.json"], 1)]
    assert directory.get_bytes("jobs/b/job.json") == b'{"new": 2}'


def test_a_failed_write_leaves_the_old_value_and_no_staged_file(directory, monkeypatch):
    def full_disk(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", full_disk)
    with pytest.raises(StoreUnavailable, match="cannot write jobs/a/job.json .*No space left on device"):
        directory.put_bytes("jobs/a/job.json", b"half")
    monkeypatch.undo()
    assert directory.get_bytes("jobs/a/job.json") == b"{}"
    assert os.listdir(directory.root / ".tmp") == []


def test_a_missing_store_directory_is_store_missing_for_readers_and_made_by_the_first_put(tmp_path):
    store = open_store(tmp_path / "not" / "yet")
    for read in (lambda: store.get_bytes("jobs/a/job.json"), lambda: store.list_children("jobs/"),
                 lambda: store.list_keys(""), lambda: store.exists("jobs/a/job.json")):
        with pytest.raises(StoreMissing, match=re.escape(f"no artifact store at {tmp_path}/not/yet: ") + ".*--store"):
            read()
    assert not (tmp_path / "not").exists()
    store.put_bytes("jobs/a/job.json", b"{}")
    assert store.list_children("jobs/") == ["a"]


class CountingOs:
    """Counts the calls a piece of code makes to some os functions."""

    def __init__(self, monkeypatch, names):
        self.calls = {name: 0 for name in names}
        for name in names:
            monkeypatch.setattr(os, name, self._counting(name, getattr(os, name)))

    def _counting(self, name, real):
        def counted(*args, **kwargs):
            self.calls[name] += 1
            return real(*args, **kwargs)
        return counted


def test_listing_the_children_of_jobs_reads_no_file_and_stats_nothing(tmp_path, monkeypatch):
    store = directory_store(tmp_path)
    store.put_bytes("jobs/0000/job.json", b"{}")
    for number in range(1, 2000):
        (store.root / "jobs" / f"{number:04d}").mkdir()
    counting = CountingOs(monkeypatch, ["open", "stat", "lstat", "scandir", "listdir"])
    children = store.list_children("jobs/")
    monkeypatch.undo()
    assert children == [f"{number:04d}" for number in range(2000)]
    assert counting.calls == {"open": 2, "stat": 0, "lstat": 0, "scandir": 0, "listdir": 1}, "open DIR, jobs/; list"


def test_a_delete_removes_the_directories_it_empties_but_keeps_jobs(directory):
    directory.put_bytes("jobs/a/files/deep/x", b"x")
    directory.delete_prefix("jobs/a/")
    assert sorted(os.listdir(directory.root)) == [".tmp", "jobs"] and os.listdir(directory.root / "jobs") == []


def test_a_delete_unlinks_a_symlink_at_a_key_and_never_what_it_points_to(directory, tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("keep me")
    os.symlink(victim, directory.root / "jobs" / "a" / "log.txt")
    directory.delete_prefix("jobs/a/")
    assert victim.read_text() == "keep me" and not (directory.root / "jobs" / "a").exists()


def test_a_delete_through_a_symlinked_directory_is_refused(directory, tmp_path):
    outside = tmp_path / "outside"
    (outside / "x").mkdir(parents=True)
    (outside / "x" / "job.json").write_text("keep me")
    os.symlink(outside, directory.root / "jobs" / "evil")
    with pytest.raises(StoreUnavailable, match="symlink"):
        directory.delete("jobs/evil/x/job.json")
    assert (outside / "x" / "job.json").read_text() == "keep me"


# --- the S3 backend --------------------------------------------------------------------------

@pytest.fixture
def s3(request) -> ArtifactStore:
    return s3_store(request)


def s3_operations(store) -> list[str]:
    """The S3 operations `store` sends from now on, by name, as botocore's events report them."""
    sent = []
    store.client.meta.events.register("before-call.s3", lambda model, **_: sent.append(model.name))
    return sent


def test_s3_listings_are_paginated_and_list_children_reads_no_object(s3):
    names = [f"{number:04d}" for number in range(1003)]  # over ListObjectsV2's 1,000 a page
    for name in names:
        s3.client.put_object(Bucket=s3.bucket, Key=f"ci/jobs/{name}/job.json", Body=b"{}")
    sent = s3_operations(s3)
    assert s3.list_children("jobs/") == names
    assert sent == ["ListObjectsV2", "ListObjectsV2"], "two pages of common prefixes, no object read"
    assert s3.list_keys("jobs") == [f"jobs/{name}/job.json" for name in names]


def test_a_large_file_goes_up_to_s3_in_parts_and_comes_back_whole(s3, tmp_path):
    big = os.urandom(17 * 1024 * 1024 + 5)  # over the 16 MiB multipart threshold
    (tmp_path / "big.bin").write_bytes(big)
    sent = s3_operations(s3)
    s3.put_file("jobs/a/files/big.bin", tmp_path / "big.bin")
    assert sent.count("UploadPart") == 2 and "CompleteMultipartUpload" in sent and "PutObject" not in sent
    assert s3.get_bytes("jobs/a/files/big.bin") == big


def test_s3_deletes_go_in_batches_of_a_thousand_keys(s3):
    keys = [f"jobs/{n:04d}/job.json" for n in range(1003)]
    for key in keys:
        s3.client.put_object(Bucket=s3.bucket, Key=f"ci/{key}", Body=b"{}")
    s3.put_bytes("jobs/keep/job.json", b"{}")
    sent = s3_operations(s3)
    assert s3.delete_keys(keys) == 1003
    assert sent == ["DeleteObjects", "DeleteObjects"]
    assert s3.list_keys("jobs/") == ["jobs/keep/job.json"]


def test_s3_objects_that_are_no_keys_are_not_listed(s3):
    s3.put_bytes("jobs/a/job.json", b"{}")
    for stray in ("ci/jobs//x", "ci/.tmp/y", "elsewhere/jobs/b/job.json", "ci"):
        s3.client.put_object(Bucket=s3.bucket, Key=stray, Body=b"not a key of the store")
    assert s3.list_children("") == ["jobs"]
    assert s3.list_children("jobs/") == ["a"]
    assert s3.list_keys("") == ["jobs/a/job.json"]


def test_an_s3_bucket_that_is_not_there_is_store_missing_with_what_to_do(s3_env):
    store = open_store("s3://no-such-bucket-here/ci")
    for attempt in (lambda: store.get_bytes("jobs/a/job.json"), lambda: store.list_children("jobs/"),
                    lambda: store.list_keys(""), lambda: store.put_bytes("jobs/a/job.json", b"{}")):
        with pytest.raises(StoreMissing, match="no S3 bucket no-such-bucket-here .*aws s3 mb s3://no-such-bucket-here"):
            attempt()


def test_an_unreachable_s3_endpoint_is_store_unavailable_naming_the_variable(s3_env, monkeypatch):
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        monkeypatch.setenv("TRIVIALCI_S3_ENDPOINT_URL", f"http://127.0.0.1:{closed.getsockname()[1]}")
    store = open_store("s3://bucket/ci")
    with pytest.raises(StoreUnavailable, match="cannot reach the S3 server .*TRIVIALCI_S3_ENDPOINT_URL"):
        store.get_bytes("jobs/a/job.json")


def test_the_cli_says_in_one_line_that_s3_credentials_are_missing(s3_env, tmp_path):
    env = {**os.environ, "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"), "AWS_CONFIG_FILE": str(tmp_path / "none")}
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        env.pop(name)
    done = subprocess.run([sys.executable, "-m", "trivialci", "history", "list", "--store", "s3://bucket/ci"],
                          capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 4
    assert "no S3 credentials" in done.stderr and "AWS_ACCESS_KEY_ID" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr


def test_s3_access_denied_is_store_unavailable_saying_to_check_the_credentials(s3_env, tmp_path, monkeypatch):
    from s3server import MotoServer  # after s3_env: it skipped the test if moto is not installed

    strict = MotoServer(tmp_path / "strict-moto.log", env={"INITIAL_NO_AUTH_ACTION_COUNT": "0"})  # checks keys
    try:
        monkeypatch.setenv("TRIVIALCI_S3_ENDPOINT_URL", strict.endpoint)
        store = open_store("s3://bucket/ci")
        for attempt in (lambda: store.put_bytes("jobs/a/job.json", b"{}"), lambda: store.get_bytes("jobs/a/job.json")):
            with pytest.raises(StoreUnavailable, match="access denied to .* jobs/a/job.json .*check the credentials"):
                attempt()
    finally:
        strict.stop()


def test_s3_urls_open_with_the_prefix_joined_cleanly(s3_env):
    for url, shown, root in [("s3://bucket", "s3://bucket", ""), ("s3://bucket/", "s3://bucket", ""),
                             ("s3://bucket/ci/", "s3://bucket/ci", "ci/"), ("s3://b.k-t/a/b", "s3://b.k-t/a/b", "a/b/")]:
        store = open_store(url)
        assert (store.url, store.bucket, store.root) == (shown, url.split("/")[2], root)


# --- opening a store -------------------------------------------------------------------------

def test_open_store_takes_file_urls_and_plain_paths(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert open_store("file:///srv/ci%20store").root == Path("/srv/ci store")
    assert open_store("file://localhost/srv/store").root == Path("/srv/store")
    assert open_store("relative/store").root == tmp_path / "relative" / "store"
    assert open_store(tmp_path / "p").url == (tmp_path / "p").as_uri()


@pytest.mark.parametrize("url, message", [
    ("file://relative", "three slashes"),
    ("file:relative", "three slashes"),
    ("file://", "three slashes"),
    ("file:///srv/store?x=1", "%3F"),
    ("s3://", "not an S3 store URL: write s3://BUCKET/PREFIX"),
    ("s3:///prefix", "not an S3 store URL"),
    ("s3://Bad_Bucket/ci", "lowercase letters"),
    ("s3://bucket/ci?x=1", "not an S3 store URL"),
    ("s3://bucket/../x", "bad artifact store key"),
    ("http://example.com/store", "unknown artifact store URL"),
    ("", "no artifact store given: pass --store .*TRIVIALCI_STORE"),
    (None, "no artifact store given"),
])
def test_open_store_refuses_what_it_cannot_open(url, message):
    with pytest.raises(BadInput, match=message):
        open_store(url)


def test_the_store_loads_no_click_watchdog_or_boto3():
    probe = ("import sys, trivialci.store, trivialci.store.directory, trivialci.store.history\n"
             "print(sorted(m for m in sys.modules if m.split('.')[0] in ('click', 'watchdog', 'boto3')))")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
