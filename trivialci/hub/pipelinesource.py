"""A pipeline kept in git: `--pipeline git+URL#BRANCH`.

The CI's own scripts are then versioned and reviewed like code. The node runs
scripts from a symlink that always points at the branch's newest checkout:

    WORKDIR/pipelines/SHA/            a worktree of BRANCH at SHA (from WORKDIR/mirrors/)
    WORKDIR/pipelines/current  ->     SHA/pipeline, or SHA when the branch has no pipeline/ folder

When the branch moves, `refresh` checks out the new sha and swaps the link
with one rename, so each event runs entirely the old or entirely the new
scripts; older checkouts are then removed. The hub's branch_update script
calls `refresh_if_source` for every push it sees.
"""

import os
from pathlib import Path

from ..errors import BadInput
from ..git.commands import check_branch, ls_remote_heads, resolve_repo
from ..git.mirror import Mirror

PREFIX = "git+"
SOURCE_ENV = "TRIVIALCI_PIPELINE_SOURCE"


def is_source(spec: str | None) -> bool:
    return bool(spec) and spec.startswith(PREFIX)


def parse(spec: str) -> tuple[str, str]:
    """(repository, branch) of git+URL#BRANCH."""
    url, _, branch = spec[len(PREFIX):].rpartition("#")
    if not url or not branch:
        raise BadInput(f"bad pipeline source {spec!r}: write it git+URL#BRANCH, e.g. git+/srv/git/ci.git#main")
    return resolve_repo(url), check_branch(branch)


def refresh(workdir, spec: str, sha: str | None = None) -> Path:
    """Check out the branch's head (or `sha`) and point `current` at it; the `current` path."""
    repo, branch = parse(spec)
    root = Path(workdir) / "pipelines"
    sha = sha or _head(repo, branch)
    mirror = Mirror(workdir, repo)
    mirror.update()
    checkout = root / sha
    if not checkout.is_dir():
        root.mkdir(parents=True, exist_ok=True)
        mirror.add_worktree(sha, checkout)
    _point(root / "current", checkout / "pipeline" if (checkout / "pipeline").is_dir() else checkout)
    _remove_others(mirror, root, keep=checkout)
    return root / "current"


def refresh_if_source(payload: dict) -> bool:
    """Called on a branch_update: refresh this hub's pipeline if the push was to its source."""
    spec, workdir = os.environ.get(SOURCE_ENV), os.environ.get("TRIVIALCI_WORKDIR")
    if not is_source(spec) or not workdir or parse(spec) != (resolve_repo(payload["repo"]), payload["branch"]):
        return False
    refresh(workdir, spec, payload["new"])
    return True


def _head(repo: str, branch: str) -> str:
    heads = ls_remote_heads(repo)
    if branch not in heads:
        raise BadInput(f"the pipeline source {repo} has no branch {branch!r}")
    return heads[branch]


def _point(link: Path, target: Path) -> None:
    staged = link.with_name(f".current.{os.getpid()}")
    if os.path.lexists(staged):
        os.unlink(staged)
    os.symlink(target, staged)
    os.replace(staged, link)


def _remove_others(mirror: Mirror, root: Path, keep: Path) -> None:
    for entry in root.iterdir():
        if entry.is_dir() and not entry.is_symlink() and entry != keep and not entry.name.startswith("."):
            mirror.remove_worktree(entry)
