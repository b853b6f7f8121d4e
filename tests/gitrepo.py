"""Real git repositories for tests: a bare origin in tmp_path and a working clone that pushes to it."""

import subprocess
from pathlib import Path

IDENTITY = ["-c", "user.name=ci", "-c", "user.email=ci@example.invalid"]


def git(*args, cwd=None, check=True) -> str:
    done = subprocess.run(["git", *map(str, args)], cwd=cwd, capture_output=True, text=True)
    if check and done.returncode != 0:
        raise AssertionError(f"git {' '.join(map(str, args))} failed: {done.stderr}")
    return done.stdout.strip()


class Origin:
    """`root/origin.git` (bare, what a server holds) and `root/work` (a clone whose `origin` it is)."""

    def __init__(self, root: Path):
        self.bare, self.work = Path(root) / "origin.git", Path(root) / "work"
        git("init", "-q", "--bare", "-b", "main", self.bare)
        git("init", "-q", "-b", "main", self.work)
        git("remote", "add", "origin", self.bare, cwd=self.work)

    def commit(self, files: dict[str, str], branch: str = "main", message: str = "change", push: bool = True) -> str:
        """Write `files` (relative path -> text) on `branch`, commit, push; the new commit's sha."""
        git("checkout", "-q", "-B", branch, cwd=self.work)
        for name, text in files.items():
            path = self.work / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
        git("add", "-A", cwd=self.work)
        git(*IDENTITY, "commit", "-q", "--allow-empty", "-m", message, cwd=self.work)
        if push:
            self.push(branch)
        return git("rev-parse", "HEAD", cwd=self.work)

    def push(self, *refspecs: str, env=None) -> subprocess.CompletedProcess:
        return subprocess.run(["git", "push", "-q", "-f", "origin", *refspecs], cwd=self.work, capture_output=True,
                              text=True, env=env, check=True)

    def delete_branch(self, branch: str, env=None) -> subprocess.CompletedProcess:
        return subprocess.run(["git", "push", "-q", "origin", "--delete", branch], cwd=self.work,
                              capture_output=True, text=True, env=env, check=True)

    def heads(self) -> dict[str, str]:
        listing = git("for-each-ref", "--format=%(refname:lstrip=2) %(objectname)", "refs/heads", cwd=self.bare)
        return dict(line.rsplit(" ", 1) for line in listing.splitlines())
