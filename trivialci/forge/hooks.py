"""The shape every forge module shares: a delivery refused with an HTTP status, a hook reduced to one event.

A forge module (github.py, gitea.py, gitlab.py) offers the same names:

    NAME                           "github", "gitea" or "gitlab": the path /hooks/NAME and the event's "forge"
    verify(headers, body, secret)  raise Refusal(401 or 403) unless the delivery is signed with the secret
    event_name(headers)            the forge's name of the event ("push", "Merge Request Hook", ...)
    delivery_id(headers)           the forge's id of the delivery, or None
    is_ping(event)                 whether it is the forge's hello (answered 200, nothing else)
    reduce(event, payload)         a Hook (what the flow needs), or an Ignored with the reason
    status_request(root, token, report)   the HTTP request that posts a commit status (statuses.py)

Everything a payload carries is hostile until a grammar below accepted it: the
forge signed the bytes, not their meaning (a branch can be named to look like
an option, a title can hold terminal escapes). Each grammar is one function
here; the forge modules only say where in their payload a value is.
"""

import hashlib
import hmac
import json
import re
import unicodedata
from dataclasses import dataclass, field

from ..errors import BadInput, TrivialCiError
from ..git.commands import check_branch, check_sha

ZERO_SHA = re.compile(r"0{40}(0{24})?\Z")
FULL_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}(/[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}){1,20}\Z")
MAX_FULL_NAME = 255
MAX_TEXT = 200  # an author's name, a commit's subject, a pull request's title: shown, never parsed
MAX_DELIVERY_ID = 128
MAX_NUMBER = 2 ** 31 - 1
MAX_URL = 2048


class Refusal(TrivialCiError):
    """A delivery the webhook endpoint refuses; `status` is the HTTP status it answers with."""

    exit_code = 2

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Hook:
    """One event for the hub, from one delivery; "repo" is added once the hook matched a configured repository."""

    event: str  # branch_update, branch_delete, tag_update or pull_request
    fields: dict  # the event's payload without "repo"
    full_name: str  # OWNER/NAME (GitLab: GROUP/.../NAME) on the forge
    clone_urls: tuple = field(default=())  # what the payload says the repository's URLs are: compared, never fetched


@dataclass(frozen=True)
class Ignored:
    """A delivery that is fine but asks for nothing (a label on a pull request, an issue, ...)."""

    reason: str


def verify_hmac(secret: str, body: bytes, given: str | None, header: str, prefix: str = "") -> None:
    """Refusal unless `given` is PREFIX + hex(HMAC-SHA256(secret, body)), compared in constant time."""
    if not given:
        raise Refusal(401, f"no {header} header: set the webhook's secret to TRIVIALCI_WEBHOOK_SECRET's value")
    expected = prefix + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected.encode(), given.strip().encode("latin-1", "replace")):
        raise Refusal(403, f"the {header} signature does not match: is the webhook's secret the hub's?")


def verify_token(secret: str, given: str | None, header: str) -> None:
    """Refusal unless `given` is the secret itself (GitLab sends it as it is), compared in constant time."""
    if not given:
        raise Refusal(401, f"no {header} header: set the webhook's secret token to TRIVIALCI_WEBHOOK_SECRET's value")
    if not hmac.compare_digest(secret.encode(), given.encode("latin-1", "replace")):
        raise Refusal(403, f"the {header} does not match: is the webhook's secret token the hub's?")


def json_object(body: bytes) -> dict:
    """The delivery's body as a JSON object; Refusal(400) for anything else."""
    try:
        payload = json.loads(body.decode("utf-8"), parse_constant=_no_constant)
    except UnicodeDecodeError:
        raise Refusal(400, "the body is not UTF-8") from None
    except RecursionError:
        raise Refusal(400, "the body is JSON nested too deeply to read") from None
    except ValueError as error:
        raise Refusal(400, f"the body is not JSON: {error}") from None
    if not isinstance(payload, dict):
        raise Refusal(400, "the body is JSON but not an object")
    return payload


def _no_constant(name):
    raise ValueError(f"{name} is not JSON")


def dig(payload, *path, kind=None):
    """payload[path[0]][path[1]]...; None where a step is missing or not an object (or not of `kind`)."""
    for step in path:
        if not isinstance(payload, dict):
            return None
        payload = payload.get(step)
    return payload if kind is None or isinstance(payload, kind) else None


def branch(name, what: str = "branch") -> str:
    """A branch (or tag) name git accepts and that is safe to pass on; Refusal(400) otherwise."""
    try:
        return check_branch(name)
    except BadInput as error:
        raise Refusal(400, f"refused {what}: {error}") from None


def sha(value, what: str = "commit") -> str:
    """A full commit id; Refusal(400) otherwise."""
    try:
        return check_sha(value)
    except BadInput as error:
        raise Refusal(400, f"refused {what}: {error}") from None


def sha_or_none(value, what: str = "commit") -> str | None:
    """A commit id, or None for git's all-zero id (the ref did not exist) or a missing one."""
    return None if value is None or isinstance(value, str) and ZERO_SHA.match(value) else sha(value, what)


def is_zero(value) -> bool:
    return isinstance(value, str) and bool(ZERO_SHA.match(value))


def full_name(value) -> str:
    """OWNER/NAME (or GROUP/SUBGROUP/NAME): letters, digits, '_', '.', '-'; no '.' or '..' part; Refusal(400)."""
    if not isinstance(value, str) or len(value) > MAX_FULL_NAME or not FULL_NAME.match(value) \
            or any(part in (".", "..") for part in value.split("/")):
        raise Refusal(400, f"refused repository name {str(value)[:80]!r}: expected OWNER/NAME")
    return value


def full_name_or_none(value) -> str | None:
    """A repository's name when it passes full_name, else None (a fork that was deleted, a name we refuse)."""
    try:
        return full_name(value)
    except Refusal:
        return None


def number(value, what: str = "pull request number") -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= MAX_NUMBER:
        raise Refusal(400, f"refused {what} {str(value)[:40]!r}: expected a positive integer")
    return value


def text(value, limit: int = MAX_TEXT) -> str | None:
    """A name or subject to show: its first line, control and format characters dropped, at most `limit` chars."""
    if not isinstance(value, str):
        return None
    line = value[:8 * limit].strip().split("\n", 1)[0]  # a 20 MiB commit message is read no further
    shown = "".join(c for c in line if unicodedata.category(c) not in ("Cc", "Cf", "Cs"))
    return shown[:limit]


def urls(*values) -> tuple:
    """The strings among `values` that could be a repository's URL (bounded, one line): for comparing only."""
    return tuple(v for v in values if isinstance(v, str) and 0 < len(v) <= MAX_URL and v.isprintable())


def delivery_id(value) -> str | None:
    """A forge's delivery id if it is a short printable token, else None (the body's hash stands in)."""
    if isinstance(value, str) and 0 < len(value) <= MAX_DELIVERY_ID and re.fullmatch(r"[A-Za-z0-9_.:-]+", value):
        return value
    return None


def pull_request(action: str, number_: int, ref: str, head_sha, head_repo, base_repo: str, **details) -> dict:
    """The fields of a pull_request event: what every forge's pull (merge) request reduces to."""
    head_repo = full_name_or_none(head_repo)
    branch_name = ref[len("refs/"):-len("/head")]  # pull/N or merge-requests/N: the job's "branch"
    fork = head_repo is None or head_repo.lower() != base_repo.lower()
    return {"action": action, "number": number_, "branch": branch(branch_name), "ref": ref,
            "new": sha(head_sha, "head commit"), "head_repo": head_repo, "fork": fork, **details}
