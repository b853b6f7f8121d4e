"""The worker's own disk: leftovers of jobs and crashes go, mirrors are gc'ed, and one nobody builds goes."""

import os
import time

from gitrepo import Origin, git

from trivialci.git import Mirror
from trivialci.worker import clean_workdir

DAY = 86400
NOW = time.time()


def age(path, days):
    os.utime(path, (NOW - days * DAY, NOW - days * DAY), follow_symlinks=False)


def test_leftovers_older_than_a_day_go_and_running_or_young_ones_stay(tmp_path):
    workdir = tmp_path / "disk"
    for name in ("old", "running", "young"):
        (workdir / "jobs" / name / "src").mkdir(parents=True)
    (workdir / "jobs" / "running.pid").write_text("1")
    for name in ("old", "running"):
        age(workdir / "jobs" / name, 3)
    (workdir / "logs").mkdir()
    for name, days in (("ended-long-ago", 2), ("ended-now", 0)):
        (workdir / "logs" / f"{name}.log").write_text("log")
        (workdir / "logs" / f"{name}.ended").write_text("x")
        age(workdir / "logs" / f"{name}.ended", days)
    (workdir / "logs" / "still-running.log").write_text("log")
    age(workdir / "logs" / "still-running.log", 5)
    for where in ("event-logs", "outbox/tmp", "artifacts"):
        (workdir / where).mkdir(parents=True)
        (workdir / where / "stale").write_text("x")
        age(workdir / where / "stale", 2)
        (workdir / where / "fresh").write_text("x")
    victim = tmp_path / "victim"
    victim.write_text("keep")
    os.symlink(victim, workdir / "event-logs" / "link")
    age(workdir / "event-logs" / "link", 5)
    done = clean_workdir(workdir, now=NOW)
    assert sorted(os.listdir(workdir / "jobs")) == ["running", "running.pid", "young"]
    assert sorted(os.listdir(workdir / "logs")) == ["ended-now.ended", "ended-now.log", "still-running.log"]
    for where in ("event-logs", "outbox/tmp", "artifacts"):
        assert os.listdir(workdir / where) == ["fresh"]
    assert victim.read_text() == "keep"
    assert any("leftover worktree" in line for line in done)
    assert clean_workdir(workdir, now=NOW + 60) == [], "at most once a day"


def test_a_mirror_is_gc_ed_and_one_nobody_built_for_keep_days_goes(tmp_path):
    used, unused = Origin(tmp_path / "used"), Origin(tmp_path / "unused")
    used.commit({"a": "1"})
    unused.commit({"b": "2"})
    workdir = tmp_path / "disk"
    for origin in (used, unused):
        Mirror(workdir, str(origin.bare)).update()
    for _ in range(60):  # loose objects for gc --auto to pack (its threshold is lowered below)
        used.commit({"a": str(_)})
    Mirror(workdir, str(used.bare)).update()
    git("config", "gc.auto", "10", cwd=Mirror(workdir, str(used.bare)).path)
    stale = Mirror(workdir, str(unused.bare)).path
    for path in (stale, stale / "FETCH_HEAD"):
        if path.exists():
            age(path, 40)
    done = clean_workdir(workdir, keep_days=30, now=NOW)
    assert not stale.exists() and Mirror(workdir, str(used.bare)).path.is_dir()
    assert any("removed the mirror" in line for line in done)
    packed = Mirror(workdir, str(used.bare)).path / "objects" / "pack"
    assert list(packed.glob("*.pack")), "git gc --auto packed the loose objects"


def test_a_mirror_with_a_worktree_checked_out_is_never_removed(tmp_path):
    origin = Origin(tmp_path / "repo")
    sha = origin.commit({"a": "1"})
    workdir = tmp_path / "disk"
    mirror = Mirror(workdir, str(origin.bare))
    mirror.add_worktree(sha, workdir / "jobs" / "J" / "src")
    (workdir / "jobs" / "J.pid").write_text("1")
    for path in (mirror.path, mirror.path / "FETCH_HEAD", mirror.path / "worktrees"):
        if path.exists():
            age(path, 40)
    clean_workdir(workdir, keep_days=30, now=NOW)
    assert mirror.path.is_dir() and (workdir / "jobs" / "J" / "src" / "a").exists()
