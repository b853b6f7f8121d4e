"""What a local working copy holds in .trivialci/ that a push will not carry: files not committed, or ignored.

A repository whose .gitignore has a `build` line never commits
`.trivialci/build`: the hub then finds nothing to build. `trivialci up`
says so at start, naming the .gitignore line (`git check-ignore -v`).
git runs as commands.py runs it (argument lists, --end-of-options, a timeout).
"""

import os

from .commands import GitError, run_git

DIRECTORY = ".trivialci"
MAX_SHOWN = 10


def pipeline_warnings(path: str) -> list[str]:
    """One line per file of .trivialci/ in the working copy at `path` that a push would not carry; [] for a
    bare repository, a URL, or a path git cannot read."""
    if "://" in path or not os.path.isdir(os.path.join(path, DIRECTORY)):
        return []
    try:
        if run_git(["rev-parse", "--is-bare-repository"], path, 30).strip() != "false":
            return []
        untracked = _listed(path, ["ls-files", "-z", "--others", "--exclude-standard"])
        ignored = _listed(path, ["ls-files", "-z", "--others", "--ignored", "--exclude-standard"])
        changed = _listed(path, ["diff", "-z", "--name-only", "HEAD"])
    except GitError:
        return []
    lines = [f"{name} is not committed: git add {name} && git commit" for name in untracked]
    lines += [f"{name} has changes that are not committed: a push builds what is committed" for name in changed]
    lines += [_ignored(path, name) for name in ignored]
    return lines[:MAX_SHOWN]


def _listed(path: str, command: list[str]) -> list[str]:
    output = run_git([*command, "--", DIRECTORY], path, 30)
    return sorted(name for name in output.split("\0") if name)


def _ignored(path: str, name: str) -> str:
    """`name` is ignored, and by which line: git check-ignore -v says SOURCE:LINE:PATTERN."""
    try:
        rule = run_git(["check-ignore", "-v", "--no-index", "--", name], path, 30).split("\t", 1)[0].strip()
    except GitError:
        rule = "a .gitignore rule"
    return f"{name} is ignored by {rule}, so it is never committed: git add -f {name} && git commit"
