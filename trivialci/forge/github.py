"""GitHub: webhooks in (push, pull_request, ping), commit statuses out.

Deliveries (docs.github.com, "Validating webhook deliveries" and "Webhook
events and payloads"): X-GitHub-Event names the event, X-GitHub-Delivery is a
GUID, X-Hub-Signature-256 is `sha256=` and the hex HMAC-SHA256 of the raw body
keyed with the webhook's secret. Payloads are capped at 25 MB.

    push          ref, before, after, deleted, head_commit.message, pusher.name, sender.login, repository
    pull_request  action (opened, synchronize, reopened, closed, ...), number, pull_request.head.sha,
                  .head.ref, .head.repo.full_name (null once the fork is deleted), .base.ref,
                  .base.repo.full_name, .title, .user.login

Statuses ("REST API endpoints for commit statuses"): POST
{root}/repos/OWNER/NAME/statuses/SHA with {state: pending|success|failure|error,
context, description, target_url}; a classic token needs the repo:status
scope, a fine-grained one "Commit statuses" (write). GitHub Enterprise's root
is https://HOST/api/v3. Gitea and Forgejo send the same payloads (gitea.py).
"""

from . import hooks
from .hooks import Hook, Ignored, dig
from .statuses import ApiRequest

NAME = "github"
TOKEN_ENV, API_ENV, DEFAULT_API = "TRIVIALCI_GITHUB_TOKEN", "TRIVIALCI_GITHUB_API_URL", "https://api.github.com"
SIGNATURE = "X-Hub-Signature-256"
STATES = {"pending": "pending", "running": "pending", "success": "success", "failure": "failure", "error": "error",
          "canceled": "error"}
PULL_ACTIONS = {"opened": "opened", "synchronize": "updated", "reopened": "reopened", "closed": "closed"}


def verify(headers, body: bytes, secret: str) -> None:
    hooks.verify_hmac(secret, body, headers.get(SIGNATURE), SIGNATURE, prefix="sha256=")


def event_name(headers) -> str:
    return headers.get("X-GitHub-Event") or ""


def delivery_id(headers) -> str | None:
    return hooks.delivery_id(headers.get("X-GitHub-Delivery"))


def is_ping(event: str) -> bool:
    return event == "ping"


def reduce(event: str, payload: dict) -> Hook | Ignored:
    if event == "push":
        return reduce_push(payload, NAME)
    if event == "pull_request":
        return reduce_pull_request(payload, PULL_ACTIONS)
    return Ignored(f"the {event or 'unnamed'} event asks for no build (send push and pull_request events)")


def reduce_push(payload: dict, forge: str) -> Hook | Ignored:
    """A push to a branch or a tag: branch_update, branch_delete or tag_update (shared with Gitea)."""
    ref = payload.get("ref")
    if not isinstance(ref, str) or not ref.startswith(("refs/heads/", "refs/tags/")):
        return Ignored(f"a push to {str(ref)[:80]!r}, neither a branch nor a tag")
    deleted = payload.get("deleted") is True or hooks.is_zero(payload.get("after"))
    common = {"author": _pusher(payload), "subject": hooks.text(dig(payload, "head_commit", "message"))}
    if ref.startswith("refs/tags/"):
        fields = {"tag": hooks.branch(ref[len("refs/tags/"):], "tag"), "old": hooks.sha_or_none(payload.get("before")),
                  "new": None if deleted else hooks.sha(payload.get("after")), **common}
        return _hook("tag_update", fields, payload)
    name = hooks.branch(ref[len("refs/heads/"):])
    old = hooks.sha_or_none(payload.get("before"))
    if deleted:
        return _hook("branch_delete", {"branch": name, "old": old, "author": common["author"]}, payload)
    return _hook("branch_update", {"branch": name, "old": old, "new": hooks.sha(payload.get("after")), **common},
                 payload)


def reduce_pull_request(payload: dict, actions: dict) -> Hook | Ignored:
    """A pull request opened, pushed to, reopened or closed (shared with Gitea, whose actions differ)."""
    action = actions.get(payload.get("action"))
    if action is None:
        return Ignored(f"the pull request action {str(payload.get('action'))[:40]!r} changes no code")
    pull = dig(payload, "pull_request", kind=dict) or {}
    base = hooks.full_name(dig(pull, "base", "repo", "full_name") or dig(payload, "repository", "full_name"))
    number = hooks.number(payload.get("number", pull.get("number")))
    fields = hooks.pull_request(action, number, f"refs/pull/{number}/head", dig(pull, "head", "sha"),
                                dig(pull, "head", "repo", "full_name"), base,
                                head_branch=hooks.text(dig(pull, "head", "ref")),
                                base_branch=hooks.text(dig(pull, "base", "ref")),
                                author=hooks.text(dig(pull, "user", "login")), subject=hooks.text(pull.get("title")))
    return _hook("pull_request", fields, payload)


def _pusher(payload: dict) -> str | None:
    return hooks.text(dig(payload, "pusher", "name") or dig(payload, "pusher", "login") or
                      dig(payload, "sender", "login"))


def _hook(event: str, fields: dict, payload: dict) -> Hook:
    repository = dig(payload, "repository", kind=dict) or {}
    urls = hooks.urls(*(repository.get(key) for key in ("clone_url", "ssh_url", "git_url", "html_url")))
    return Hook(event, fields, hooks.full_name(repository.get("full_name")), urls)


def status_request(root: str, token: str, report: dict) -> ApiRequest:
    body = {"state": STATES[report["state"]], "context": report["context"], "description": report["description"]}
    if report.get("target_url"):
        body["target_url"] = report["target_url"]
    headers = {"Accept": "application/vnd.github+json", "Authorization": f"Bearer {token}",
               "X-GitHub-Api-Version": "2022-11-28"}
    return ApiRequest(f"{root.rstrip('/')}/repos/{report['forge_repo']}/statuses/{report['sha']}", headers, body)


def unchanged(sent: dict, report: dict) -> bool:
    """Whether posting `report` after `sent` would change nothing the forge shows."""
    return all(sent.get(key) == report.get(key) for key in ("state", "description", "target_url"))

