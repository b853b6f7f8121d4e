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
