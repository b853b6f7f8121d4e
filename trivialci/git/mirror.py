"""A worker's git mirror: the whole repository, fetched once, on the worker's own disk.

A job never clones. The worker keeps one bare mirror per repository
(`git clone --mirror`, then `git fetch --prune origin` before each job) and
makes the job's checkout with `git worktree add --detach DEST SHA`: only the
files of that commit are written, the history is already there.

On-disk layout under WORKDIR (the worker's --workdir: its local disk, never
the spool):

    WORKDIR/
      mirrors/
        KEY.git/          the bare mirror of REPO; KEY = sha1(REPO)[:16]
                          (`git -C KEY.git config remote.origin.url` prints REPO)
        KEY.lock          flock(2) on it serialises updates of that mirror
        KEY.git.new/      a first clone under way (a leftover of a crash is
                          removed by the next update)
      jobs/JOB/...        job worktrees: not made here, the caller names them
                          (e.g. WORKDIR/jobs/JOB/src); their git metadata is
                          in KEY.git/worktrees/

Mirrors may be shared: TRIVIALCI_MIRRORS names another directory to keep them
in instead of WORKDIR/mirrors/. A worker the hub boots on its own host gets the
hub's (hub/boot.py), so the commits the hub fetched to read a push's
.trivialci/ are the ones the worker checks out: one fetch per push, not two.
The lock below serialises their updates.

A worktree is detached at the exact commit of the job. Updates hold the lock
exclusively; adding and removing worktrees hold it shared (so no fetch runs
under a checkout; git guards concurrent worktree changes itself); reading a
file or a directory at a commit needs no checkout and no lock (objects never
change). After a crash, `prune()` forgets worktrees whose directory is gone.
"""

import fcntl
import os
import shutil
import unicodedata
from contextlib import contextmanager
from pathlib import Path

from ..errors import BadInput
from .commands import GitError, check_sha, repo_key, resolve_repo, run_git, run_git_bytes

MAX_COMMIT_TEXT = 200  # characters of a subject or author kept (the forge's webhooks keep as many)
NO_HOOKS = ["-c", "core.hooksPath=/dev/null"]  # a checkout for a job runs none of the mirror's hooks
# A fetch that starts no `git maintenance run --auto` after it (a process of its own on the push's path):
# the worker's disk cleanup runs `git gc --auto` on each mirror instead (gc_auto).
FETCH = ["fetch", "--prune", "--quiet", "--no-auto-maintenance", "--end-of-options", "origin"]
MIRRORS_ENV = "TRIVIALCI_MIRRORS"  # where the mirrors are, if not in WORKDIR/mirrors (shared on one host)


def mirrors_dir(workdir, env=None) -> Path:
    """Where the mirrors of a node with this workdir are: $TRIVIALCI_MIRRORS, or WORKDIR/mirrors."""
    shared = (os.environ if env is None else env).get(MIRRORS_ENV)
    return Path(os.path.abspath(shared)) if shared else Path(os.path.abspath(workdir)) / "mirrors"


class Mirror:
    """The mirror of `repo` under `workdir`/mirrors/; nothing is touched on disk until it is used."""

    def __init__(self, workdir, repo: str, timeout: float = 3600):
        self.workdir = Path(os.path.abspath(workdir))
        self.repo = resolve_repo(repo)
        self.timeout = timeout
        key = repo_key(self.repo)
        self.path = mirrors_dir(workdir) / f"{key}.git"
        self.lock_path = mirrors_dir(workdir) / f"{key}.lock"

    def update(self) -> None:
        """Bring the mirror up to date with the repository: clone it the first time, then fetch --prune."""
        with self._locked(fcntl.LOCK_EX):
            if self.path.is_dir():
                run_git(FETCH, self.path, self.timeout)
            else:
                self._clone()

    def _clone(self) -> None:
        """Clone beside the mirror, then rename: a crash never leaves a half mirror that looks whole."""
        staging = self.path.with_name(self.path.name + ".new")
        shutil.rmtree(staging, ignore_errors=True)
        try:
            run_git(["clone", "--mirror", "--quiet", "--end-of-options", self.repo, str(staging)], "/", self.timeout)
            os.rename(staging, self.path)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise

    def has_commit(self, sha: str) -> bool:
        """Whether the mirror holds commit `sha` (False if there is no mirror yet)."""
        if not self.path.is_dir():
            return False
        try:
            run_git(["cat-file", "-e", "--end-of-options", f"{check_sha(sha)}^{{commit}}"], self.path, 60)
        except GitError:
            return False
        return True

    def read_file(self, sha: str, path: str) -> bytes | None:
        """The content of file `path` at commit `sha`, or None if the commit has no such file."""
        return self._at_commit(sha, path, ["cat-file", "blob"], run_git_bytes)

    def list_executables(self, sha: str, path: str) -> list[str]:
        """The names of the executable files (mode 100755) in directory `path` at commit `sha`, sorted."""
        listing = self._at_commit(sha, path, ["ls-tree", "-z"], run_git) or ""
        entries = (line.partition("\t") for line in listing.split("\0") if line)
        return sorted(name for info, _, name in entries if info.split(" ")[0] == "100755")

    def describe(self, sha: str) -> dict:
        """{"subject", "author"} of commit `sha`, each one line of printable text a person reads (commit_text);
        {} when git cannot say (the commit is gone): a push is queued without them rather than refused."""
        show = ["show", "-s", "--no-show-signature", "--format=%s%x00%an", "--end-of-options", check_sha(sha)]
        try:
            shown = self._with_commit(sha, lambda: run_git(show, self.path, 60))
        except (GitError, BadInput):
            return {}
        subject, _, author = shown.partition("\0")
        return {"subject": commit_text(subject), "author": commit_text(author)}

    def list_dir(self, sha: str, path: str = "") -> list[str]:
        """The names in directory `path` at commit `sha`, sorted; [] if it is not a directory there."""
        listing = self._at_commit(sha, path, ["ls-tree", "--name-only", "-z"], run_git) or ""
        return sorted(name for name in listing.split("\0") if name)

    def _at_commit(self, sha: str, path: str, command: list[str], run):
        """git COMMAND SHA:PATH's output, or None when the commit has no such path. Tried at once (one git
        process when the mirror has the commit, as it does after a push's fetch); the commit is looked for,
        and fetched if missing, only when that fails."""
        spec = f"{check_sha(sha)}:{tree_path(path)}"
        try:
            return self._with_commit(sha, lambda: run([*command, "--end-of-options", spec], self.path, self.timeout))
        except GitError:
            return None  # the commit is there, the path is not (or not of that kind)

    def add_worktree(self, sha: str, dest) -> Path:
        """Check out commit `sha` (detached) into the new directory `dest`; fetch if the mirror lacks it.
        Tried at once (one git process when the mirror has the commit, as it has after the hub's fetch of a
        shared mirror); `git worktree add` of a missing commit fails before it makes anything."""
        sha, dest = check_sha(sha), Path(os.path.abspath(dest))
        return self._with_commit(sha, lambda: self._add_worktree(sha, dest))

    def _add_worktree(self, sha: str, dest: Path) -> Path:
        with self._locked(fcntl.LOCK_SH):
            run_git([*NO_HOOKS, "worktree", "add", "--detach", "--quiet", "--end-of-options", str(dest), sha],
                    self.path, self.timeout)
        return dest

    def remove_worktree(self, dest) -> None:
        """Remove a job's worktree, changes and all; a directory already gone is only forgotten."""
        dest = Path(os.path.abspath(dest))
        with self._locked(fcntl.LOCK_SH):
            try:
                # twice --force: also when a crashed `worktree add` left it locked
                run_git(["worktree", "remove", "--force", "--force", "--end-of-options", str(dest)],
                        self.path, self.timeout)
            except GitError:
                if os.path.lexists(dest):
                    raise
        self.prune()

    def prune(self) -> None:
        """Forget worktrees whose directory is gone (left by a crash, or removed by hand); git runs only when
        there is one (most jobs find none, and a git process is most of what this costs)."""
        if not self.path.is_dir() or not self._stale_worktrees():
            return
        with self._locked(fcntl.LOCK_EX):
            run_git(["worktree", "prune"], self.path, self.timeout)

    @classmethod
    def at(cls, path) -> "Mirror":
        """The mirror whose directory is `path` (WORKDIR/mirrors/KEY.git), by the URL in its config."""
        path = Path(path)
        url = run_git(["config", "--get", "remote.origin.url"], path, 60).strip()
        return cls(path.parent.parent, url)

    def last_used(self) -> float:
        """When a job last fetched into it or added or removed a worktree (mtimes git changes then)."""
        times = []
        for candidate in (self.path, self.path / "FETCH_HEAD", self.path / "worktrees"):
            try:
                times.append(candidate.stat().st_mtime)
            except OSError:
                pass
        return max(times, default=0.0)

    def gc_auto(self) -> None:
        """`git gc --auto`: git packs and prunes only when enough loose objects piled up."""
        with self._locked(fcntl.LOCK_EX):
            run_git(["gc", "--auto", "--quiet"], self.path, self.timeout)

    def remove_if_idle(self) -> bool:
        """Remove the mirror unless a worktree of it is checked out; whether it was removed."""
        with self._locked(fcntl.LOCK_EX):
            run_git(["worktree", "prune"], self.path, self.timeout)
            if any((self.path / "worktrees").glob("*")):
                return False
            shutil.rmtree(self.path)
            return True
    def _stale_worktrees(self) -> bool:
        """Whether a worktree registered in the mirror has lost its directory (what `git worktree prune` forgets)."""
        try:
            registered = [entry.path for entry in os.scandir(self.path / "worktrees") if entry.is_dir()]
        except (FileNotFoundError, NotADirectoryError):
            return False
        for admin in registered:
            try:
                checkout_link = Path(admin, "gitdir").read_text().strip()
            except OSError:
                return True  # unreadable: let git judge
            if not os.path.exists(checkout_link):
                return True
        return False

    def _with_commit(self, sha: str, attempt):
        """attempt()'s result, tried at once (one git process when the mirror has the commit); when it fails for
        want of the commit, the commit is fetched and it is tried again. GitError when it fails with the commit
        there; BadInput when the repository has the commit no more."""
        if self.path.is_dir():
            try:
                return attempt()
            except GitError:
                if self.has_commit(sha):
                    raise
        self._fetch_missing(sha)
        return attempt()

    def _fetch_missing(self, sha: str) -> None:
        """Fetch a commit the mirror lacks; BadInput when the repository has it no more."""
        self.update()
        if not self.has_commit(sha):
            raise BadInput(f"commit {sha} is not in {self.repo}, even after a fetch: "
                           "was the branch force-pushed and the commit deleted?")

    @contextmanager
    def _locked(self, operation: int):
        """Hold the mirror's lock file (flock: released by the kernel if this process dies)."""
        try:
            self.lock_path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as error:
            raise GitError(f"cannot use the mirror's lock {self.lock_path}: {error.strerror or error} "
                           "(is --workdir writable, is its disk full?)") from None
        try:
            fcntl.flock(fd, operation)
            yield
        finally:
            os.close(fd)


def commit_text(text: str) -> str:
    """A subject or author name as anyone may write it: its first line, without control, format or
    unpaired surrogate characters (a terminal escape, a bidi override), at most MAX_COMMIT_TEXT characters.
    It stays text: the web UI escapes it, the console prints it as it is."""
    line = text[:8 * MAX_COMMIT_TEXT].strip().split("\n", 1)[0]
    shown = "".join(c for c in line if unicodedata.category(c) not in ("Cc", "Cf", "Cs"))
    return shown[:MAX_COMMIT_TEXT]


def tree_path(path: str) -> str:
    """A path inside a commit, relative ('' for the top); BadInput for '..', '.' or NUL in it."""
    parts = [part for part in str(path).split("/") if part]
    if any(part in (".", "..") for part in parts) or "\0" in str(path):
        raise BadInput(f"bad path {path!r} in a repository: use a relative path without '.', '..' or NUL")
    return "/".join(parts)
