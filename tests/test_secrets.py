"""Secrets: the files a worker reads them from, who gets them, and their masking in a build's log.

Masking runs on a real pipe into a real log file (buildlog.LogCopier in its
thread), as a build's output does.
"""

import os
import re
from pathlib import Path

import pytest
from conftest import run_cli, wait_for

from trivialci.errors import BadInput
from trivialci.worker.buildlog import READ_SIZE, LogCopier
from trivialci.worker.secrets import SecretMask, check_directory, gets_secrets, read_env_file, secrets_for

SECRET = "s3cr3t-Value-0123456789"
STAMP = re.compile(rb"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z ", re.M)


def private_dir(path: Path, files: dict[str, str]) -> Path:
    path.mkdir(mode=0o700)
    for name, text in files.items():
        (path / name).parent.mkdir(mode=0o700, exist_ok=True)
        (path / name).write_text(text)
        (path / name).chmod(0o600)
    return path


def copy_through_pipe(writes: list[bytes], log: Path, secrets=(SECRET,), before_each=None) -> bytes:
    """Send `writes` down a pipe to a LogCopier masking `secrets`; the log's text without its time stamps."""
    read_end, write_end = os.pipe()
    copier = LogCopier(read_end, log, mask=SecretMask(secrets)).start()
    for number, data in enumerate(writes):
        if before_each:
            before_each(number)
        os.write(write_end, data)
    os.close(write_end)
    assert copier.join(10)
    return STAMP.sub(b"", log.read_bytes())


def test_a_secret_is_masked_in_every_line_also_when_split_across_writes(tmp_path):
    text = copy_through_pipe([f"token {SECRET} and again {SECRET}\n".encode(), b"split: " + SECRET[:7].encode(),
                              SECRET[7:].encode() + b" end\nlast " + SECRET.encode()], tmp_path / "log")
    assert text == b"token *** and again ***\nsplit: *** end\nlast ***\n"


def test_a_secret_across_two_pieces_of_a_line_that_never_ends_is_masked(tmp_path):
    """The copier writes a line longer than READ_SIZE in pieces: it keeps back a tail as long as the secret."""
    log = tmp_path / "log"
    head = b"x" * (READ_SIZE + 100) + SECRET[:5].encode()

    def after_the_first_piece(number):  # the head alone is over READ_SIZE: its piece is written first
        if number == 1:
            wait_for(lambda: log.exists() and log.read_bytes().endswith(b"\n"), message="the first piece")

    text = copy_through_pipe([head, SECRET[5:].encode() + b" end\n"], log, before_each=after_the_first_piece)
    assert SECRET[:5].encode() not in text
    assert text.replace(b"\n", b"") == b"x" * (READ_SIZE + 100) + b"*** end"


def test_the_longest_of_two_overlapping_secrets_is_masked_whole(tmp_path):
    text = copy_through_pipe([b"a=abcd1234, b=abcd\n"], tmp_path / "log", secrets=("abcd", "abcd1234"))
    assert text == b"a=***, b=***\n"


@pytest.mark.parametrize("package, expected", [
    ({}, True), ({"trusted": True}, True), ({"trusted": False}, False), ({"trusted": "false"}, False),
    ({"trusted": None}, False), ({"trusted": False, "approval": {"by": "ann"}}, False),
    ({"trusted": False, "approval": {"by": "ann", "secrets": "yes"}}, False),
    ({"trusted": False, "approval": {"by": "ann", "secrets": True}}, True),
    ({"trusted": False, "approval": ["secrets"]}, False)])
def test_only_a_trusted_or_an_explicitly_approved_job_gets_secrets(package, expected):
    assert gets_secrets(package) is expected


def test_secrets_of_a_kind_and_of_one_repository(tmp_path):
    secrets = private_dir(tmp_path / "secrets", {
        "build.env": "# comment\n\nTOKEN=for-every-repo\nSHARED=from-the-kind\n",
        "app/repo": "/srv/git/app.git\n", "app/build.env": "SHARED=from-app=with=equals\n",
        "lib/repo": "/srv/git/lib.git\n", "lib/build.env": "LIB=only-for-lib\n"})
    assert secrets_for(secrets, "build", "/srv/git/app.git") == {"TOKEN": "for-every-repo",
                                                                   "SHARED": "from-app=with=equals"}
    assert secrets_for(secrets, "build", "/srv/git/other.git") == {"TOKEN": "for-every-repo",
                                                                     "SHARED": "from-the-kind"}
    assert secrets_for(secrets, "deploy", "/srv/git/app.git") == {}
    assert check_directory(secrets) == secrets


@pytest.mark.parametrize("text, problem", [
    ("JUST A LINE\n", "write KEY=VALUE"), ("1KEY=value-long\n", "write KEY=VALUE"),
    ("TRIVIALCI_SPOOL=/elsewhere\n", "TRIVIALCI_"), ("PIN=123\n", "shorter than 4 bytes")])
def test_a_bad_line_is_refused_with_its_number(tmp_path, text, problem):
    secrets = private_dir(tmp_path / "secrets", {"build.env": "GOOD=value-long\n" + text})
    with pytest.raises(BadInput, match=f"build.env, line 2: .*{problem}"):
        read_env_file(secrets / "build.env")


def test_a_secrets_file_that_is_a_link_or_open_to_others_is_refused(tmp_path):
    secrets = private_dir(tmp_path / "secrets", {"real.env": "KEY=value-long\n"})
    (secrets / "build.env").symlink_to(secrets / "real.env")
    with pytest.raises(BadInput, match="not a link"):
        secrets_for(secrets, "build", "/srv/git/app.git")
    for mode, advice in ((0o604, "chmod 600"), (0o620, "chmod 600")):
        (secrets / "real.env").chmod(mode)
        with pytest.raises(BadInput, match=advice):
            read_env_file(secrets / "real.env")
    secrets.chmod(0o777)
    with pytest.raises(BadInput, match="chmod 700"):
        check_directory(secrets)


def test_a_worker_with_a_bad_secrets_directory_refuses_to_start_in_one_line(tmp_path):
    secrets = private_dir(tmp_path / "secrets", {"build.env": f"TOKEN={SECRET}\n"})
    (secrets / "build.env").chmod(0o644)
    refused = run_cli("worker", "--spool", tmp_path / "spool", "--name", "w1", "--workdir", tmp_path / "w1",
                      "--drain", "--secrets", secrets)
    assert refused.returncode == 2 and len(refused.stderr.strip().splitlines()) == 1, refused.stderr
    assert "chmod 600" in refused.stderr and SECRET not in refused.stderr
