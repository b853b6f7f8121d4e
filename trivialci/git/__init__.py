"""git, called safely: branch, repository and sha grammars, mirrors, and the gitwatcher.

Everything here treats names and URLs as hostile input: `check_branch`,
`check_repo` and `check_sha` refuse what git could misread, and git runs with
argument lists, `--end-of-options`, no remote helpers and a timeout (see
commands.py). A `Mirror` is a bare, fully fetched copy of a repository on a
machine's own disk, from which jobs check out with `git worktree add`.

It may import the spool layer (the gitwatcher emits branch_update events),
trivialci.errors and the standard library; never the hub, the worker or the web.
"""

from .commands import GitError, check_branch, check_repo, check_sha, ls_remote_heads, repo_key, resolve_repo
from .mirror import Mirror

__all__ = ["GitError", "Mirror", "check_branch", "check_repo", "check_sha", "ls_remote_heads", "repo_key",
           "resolve_repo"]
