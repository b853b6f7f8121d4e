"""Gitea and Forgejo: webhooks in (push, delete, pull_request), commit statuses out.

Deliveries (Gitea's services/webhook/deliver.go; Forgejo's adds X-Forgejo-*
twins of each header): X-Gitea-Event (X-Forgejo-Event) names the event,
X-Gitea-Delivery (X-Forgejo-Delivery) is a UUID, X-Gitea-Signature
(X-Forgejo-Signature) is the hex HMAC-SHA256 of the payload keyed with the
webhook's secret. The signature covers the JSON payload, which is the body
only with the "application/json" content type: the endpoint refuses the form
one. Payloads follow GitHub's (github.py), except:

    push          no "deleted" field: a deleted branch comes as a delete event
    delete        ref (the short name), ref_type (branch or tag), repository
    pull_request  actions opened, synchronized, reopened, closed, ...

Statuses (Gitea API, CreateStatusOption): POST {root}/repos/OWNER/NAME/statuses/SHA
with {state: pending|success|error|failure|warning, context, description,
target_url} and `Authorization: token TOKEN`; the token needs the
write:repository scope. The root is https://HOST/api/v1.
"""

from . import github, hooks
from .hooks import Hook, Ignored, dig
from .statuses import ApiRequest

NAME = "gitea"
TOKEN_ENV, API_ENV, DEFAULT_API = "TRIVIALCI_GITEA_TOKEN", "TRIVIALCI_GITEA_API_URL", None
SIGNATURES = ("X-Forgejo-Signature", "X-Gitea-Signature")
PULL_ACTIONS = {"opened": "opened", "synchronized": "updated", "reopened": "reopened", "closed": "closed"}
unchanged = github.unchanged


def verify(headers, body: bytes, secret: str) -> None:
    """Every signature header the forge sent must match (Forgejo sends both), and there must be one."""
    present = [name for name in SIGNATURES if headers.get(name)]
    for name in present or ["X-Gitea-Signature"]:
        hooks.verify_hmac(secret, body, headers.get(name), name)


def event_name(headers) -> str:
    return headers.get("X-Forgejo-Event") or headers.get("X-Gitea-Event") or ""


def delivery_id(headers) -> str | None:
    return hooks.delivery_id(headers.get("X-Forgejo-Delivery") or headers.get("X-Gitea-Delivery"))


def is_ping(event: str) -> bool:
    return False  # Gitea's "Test delivery" sends a push


def reduce(event: str, payload: dict) -> Hook | Ignored:
    if event == "push":
        return github.reduce_push(payload, NAME)
    if event == "delete":
        return _reduce_delete(payload)
    if event == "pull_request":
        return github.reduce_pull_request(payload, PULL_ACTIONS)
    return Ignored(f"the {event or 'unnamed'} event asks for no build (send push, delete and pull request events)")


def _reduce_delete(payload: dict) -> Hook | Ignored:
    ref, kind = payload.get("ref"), payload.get("ref_type")
    repository = dig(payload, "repository", kind=dict) or {}
    urls = hooks.urls(*(repository.get(key) for key in ("clone_url", "ssh_url", "html_url")))
    author = hooks.text(dig(payload, "sender", "login"))
    if kind == "branch":
        fields = {"branch": hooks.branch(_short(ref)), "old": None, "author": author}
        return Hook("branch_delete", fields, hooks.full_name(repository.get("full_name")), urls)
    if kind == "tag":
        fields = {"tag": hooks.branch(_short(ref), "tag"), "old": None, "new": None, "author": author, "subject": None}
        return Hook("tag_update", fields, hooks.full_name(repository.get("full_name")), urls)
    return Ignored(f"a deleted {str(kind)[:20]!r}, neither a branch nor a tag")


def _short(ref):
    """Gitea sends the short name; a full one is taken too, should that ever change."""
    return ref.removeprefix("refs/heads/").removeprefix("refs/tags/") if isinstance(ref, str) else ref


def status_request(root: str, token: str, report: dict) -> ApiRequest:
    body = {"state": github.STATES[report["state"]], "context": report["context"],
            "description": report["description"]}
    if report.get("target_url"):
        body["target_url"] = report["target_url"]
    headers = {"Accept": "application/json", "Authorization": f"token {token}"}
    return ApiRequest(f"{root.rstrip('/')}/repos/{report['forge_repo']}/statuses/{report['sha']}", headers, body)
