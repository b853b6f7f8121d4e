"""Which configured repository a hook is about, and which forge a repository was last heard from.

A hook matches a repository given with --repo when that repository's URL or
path, without a trailing "/" or ".git" and compared without case, equals one
of the URLs the payload gives for the repository, or else ends with
/OWNER/NAME (the forge's full name; GROUP/.../NAME on GitLab; for
git@host:OWNER/NAME the ':' counts as a '/'). No match, or more than one, is
a refusal: the event always names the --repo as it was given, so a payload
can never make the hub fetch a URL it chose.

The forge of a repository is remembered when one of its hooks matched
(state/forges/KEY.json: {repo, forge, forge_repo}, KEY = sha1(repo)[:16]),
so that a push the safety-net poll found, with no hook to say so, still gets
its commit statuses.
"""

import json
from pathlib import Path

from ..errors import TrivialCiError
from ..git.commands import repo_key
from ..spool.atomic import write_atomically
from ..spool.files import read_json
from ..spool.layout import hub_dir
from .hooks import Hook, Refusal, full_name
from .registry import forge_named


class ConfiguredRepos:
    def __init__(self, repos: list[str]):
        self.repos = [(repo, normal(repo)) for repo in repos]

    def match(self, hook: Hook) -> str:
        """The --repo that `hook` is about; Refusal(404) for none, Refusal(409) for several."""
        given = {normal(url) for url in hook.clone_urls}
        exact = [repo for repo, spelled in self.repos if spelled in given]
        suffix = "/" + hook.full_name.lower()
        found = sorted(set(exact or [repo for repo, spelled in self.repos if spelled.endswith(suffix)]))
        if not found:
            raise Refusal(404, f"{hook.full_name} is not a repository this hub builds: "
                               "add it with --repo (its URL or path ends with /OWNER/NAME)")
        if len(found) > 1:
            raise Refusal(409, f"{hook.full_name} matches {len(found)} repositories given with --repo: "
                               "give the URL the forge sends (its clone URL) to tell them apart")
        return found[0]


def normal(url: str) -> str:
    """A repository's URL or path as compared: lowercase, no trailing '/' or '.git', host:path as host/path."""
    text = url.strip().lower().rstrip("/")
    text = text[:-4] if text.endswith(".git") else text
    colon, slash = text.find(":"), text.find("/")
    if colon > 0 and (slash < 0 or colon < slash) and not text[colon:].startswith("://"):
        text = text[:colon] + "/" + text[colon + 1:]  # git@host:owner/name
    return text


def remember_forge(spool, repo: str, forge: str, forge_repo: str) -> None:
    """Note that `repo` is `forge_repo` on `forge`, unless that is known already."""
    path = _path(spool, repo)
    record = {"repo": repo, "forge": forge, "forge_repo": forge_repo}
    if read_json(path) == record:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(path, (json.dumps(record, indent=2, sort_keys=True) + "\n").encode(), hub_dir(spool).tmp,
                     sync_dir=False)


def known_forge(spool, repo: str) -> dict:
    """{"forge", "forge_repo"} of `repo` as last heard from its hooks, or {}."""
    record = read_json(_path(spool, repo))
    try:
        forge_named(record.get("forge"))
        return {"forge": record["forge"], "forge_repo": full_name(record.get("forge_repo"))}
    except (TrivialCiError, AttributeError):  # a file a person may have edited: unknown is the safe answer
        return {}


def _path(spool, repo: str) -> Path:
    return hub_dir(spool).state / "forges" / f"{repo_key(repo)}.json"

