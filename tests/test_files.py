"""Reads of files others may have replaced: links and special files are refused, never followed or waited on."""

import errno
import os

import pytest

from trivialci.spool.files import open_regular, read_json, read_regular


def test_a_regular_file_is_read(tmp_path):
    (tmp_path / "a.json").write_text('{"a": 1}')
    assert read_json(tmp_path / "a.json") == {"a": 1}
    assert read_json("a.json", root=tmp_path) == {"a": 1}


def test_a_link_to_a_secret_is_refused(tmp_path):
    (tmp_path / "secret.json").write_text('{"key": "s3cr3t"}')
    (tmp_path / "job.json").symlink_to(tmp_path / "secret.json")
    with pytest.raises(OSError) as refused:
        read_regular(tmp_path / "job.json")
    assert refused.value.errno == errno.ELOOP
    assert read_json(tmp_path / "job.json") is None


def test_a_link_on_the_way_under_a_root_is_refused(tmp_path):
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "x.json").write_text("{}")
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / "jobs").symlink_to(tmp_path / "elsewhere")
    assert read_json(tmp_path / "state" / "jobs" / "x.json") == {}, "without a root only the last part is checked"
    assert read_json("jobs/x.json", root=tmp_path / "state") is None
    with pytest.raises(OSError):
        open_regular("../elsewhere/x.json", root=tmp_path / "state")


def test_a_fifo_is_not_waited_on(tmp_path):
    os.mkfifo(tmp_path / "worker.json")
    with pytest.raises(OSError) as refused:
        read_regular(tmp_path / "worker.json")
    assert refused.value.errno == errno.EINVAL
    assert read_json(tmp_path / "worker.json") is None


def test_a_file_over_the_limit_is_refused(tmp_path):
    (tmp_path / "big.json").write_bytes(b" " * 101)
    with pytest.raises(OSError) as refused:
        read_regular(tmp_path / "big.json", limit=100)
    assert refused.value.errno == errno.EFBIG
    assert read_regular(tmp_path / "big.json", limit=101) == b" " * 101


def test_a_write_under_a_root_replaces_a_link_at_its_name_and_refuses_one_on_the_way(tmp_path):
    from trivialci.spool.atomic import remove_if_present, write_atomically

    root, tmp, outside = tmp_path / "state", tmp_path / "tmp", tmp_path / "outside"
    for directory in (root, tmp, outside):
        directory.mkdir()
    (outside / "x.json").write_text("precious")
    (root / "jobs").mkdir()
    (root / "jobs" / "x.json").symlink_to(outside / "x.json")
    write_atomically("jobs/x.json", b"{}", tmp, root=root)
    assert (root / "jobs" / "x.json").read_text() == "{}" and not (root / "jobs" / "x.json").is_symlink()

    (root / "queue").symlink_to(outside)
    with pytest.raises(OSError) as refused:
        write_atomically("queue/x.json", b"{}", tmp, root=root)
    assert refused.value.errno in (errno.ELOOP, errno.ENOTDIR), "O_DIRECTORY|O_NOFOLLOW refuses a link so"
    with pytest.raises(OSError):
        remove_if_present("queue/x.json", root=root)
    write_atomically("new/deeper/y.json", b"[]", tmp, root=root)
    assert (root / "new" / "deeper" / "y.json").read_text() == "[]"
    assert (outside / "x.json").read_text() == "precious" and os.listdir(tmp) == []


def test_lists_and_lstats_under_a_root_do_not_follow_links(tmp_path):
    from trivialci.spool.files import list_names, lstat_under

    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "x").write_text("")
    (tmp_path / "root").mkdir()
    (tmp_path / "root" / "link").symlink_to(tmp_path / "elsewhere")
    assert list_names("link", tmp_path / "root") == [] and list_names("", tmp_path / "root") == ["link"]
    assert lstat_under("link", tmp_path / "root").st_mode & 0o170000 == 0o120000, "the link itself"
    with pytest.raises(OSError):
        lstat_under("link/x", tmp_path / "root")
