"""A commit's subject and author, read from the hub's mirror: one printable line, whatever the commit says."""

import subprocess

from gitrepo import IDENTITY, Origin, git

from trivialci.git import Mirror
from trivialci.git.mirror import MAX_COMMIT_TEXT, commit_text

HOSTILE = "\x1b]0;pwned\x07\x1b[31mred\x1b[0m fix \u202eevil\u202c <b>x</b>\r\nsecond line"


def test_control_and_format_characters_are_dropped_and_the_rest_kept_as_text():
    assert commit_text(HOSTILE) == "]0;pwned[31mred[0m fix evil <b>x</b>"
    assert commit_text("x" * 10_000) == "x" * MAX_COMMIT_TEXT
    assert commit_text("\udcff bad byte") == " bad byte"


def test_the_mirror_describes_a_hostile_commit_as_one_line(tmp_path):
    origin = Origin(tmp_path)
    (origin.work / "f").write_text("x")
    git("add", "f", cwd=origin.work)
    subprocess.run(["git", *IDENTITY, "-c", "user.name=Eve\x1b[2J", "commit", "-q", "-F", "-"], cwd=origin.work,
                   input=HOSTILE.encode(), check=True)
    origin.push("main")
    sha = git("rev-parse", "HEAD", cwd=origin.work)
    described = Mirror(tmp_path / "workdir", str(origin.bare)).describe(sha)
    assert described["subject"].startswith("]0;pwned[31mred[0m fix evil <b>x</b>")
    assert "\x1b" not in described["author"] and described["author"].startswith("Eve")
    assert Mirror(tmp_path / "workdir", str(origin.bare)).describe("0" * 40) == {}
