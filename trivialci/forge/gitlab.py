"""GitLab: webhooks in (Push Hook, Tag Push Hook, Merge Request Hook), commit statuses out.

Deliveries (GitLab docs, "Webhooks" and "Webhook events"): X-Gitlab-Event
names the event ("Push Hook", ...), X-Gitlab-Token is the webhook's secret
token itself (no signature: use HTTPS), Idempotency-Key stays the same across
retries of one delivery, X-Gitlab-Event-UUID is shared by the hooks one action
triggered (so the delivery's key also holds the event's name).

    Push Hook / Tag Push Hook  ref, before, after (all zeros: deleted), user_username, commits[].id/.message,
                               project.path_with_namespace, .git_http_url, .git_ssh_url, .web_url
    Merge Request Hook         object_attributes.iid, .action (open, reopen, update, close, merge, approved, ...),
                               .oldrev (only when new commits came), .last_commit.id, .source_project_id,
                               .target_project_id, .source.path_with_namespace, .source_branch,
                               .target_branch, .title; user.username; project (the target)

Statuses (Commits API, "Set the pipeline status of a commit"): POST
{root}/projects/ID_OR_URLENCODED_PATH/statuses/SHA with {state:
pending|running|success|failed|canceled, name, description, target_url} and
`PRIVATE-TOKEN: TOKEN`; the token needs the api scope. The root is
https://HOST/api/v4. GitLab refuses a transition it does not allow (running
-> pending), so a report with the state last sent is not sent again.
"""

from urllib.parse import quote

from . import hooks
from .hooks import Hook, Ignored, dig
from .statuses import ApiRequest

NAME = "gitlab"
TOKEN_ENV, API_ENV, DEFAULT_API = "TRIVIALCI_GITLAB_TOKEN", "TRIVIALCI_GITLAB_API_URL", None
TOKEN_HEADER = "X-Gitlab-Token"
STATES = {"pending": "pending", "running": "running", "success": "success", "failure": "failed", "error": "failed",
          "canceled": "canceled"}
MERGE_ACTIONS = {"open": "opened", "reopen": "reopened", "update": "updated", "close": "closed", "merge": "closed"}


def verify(headers, body: bytes, secret: str) -> None:
    hooks.verify_token(secret, headers.get(TOKEN_HEADER), TOKEN_HEADER)


def event_name(headers) -> str:
    return headers.get("X-Gitlab-Event") or ""


def delivery_id(headers) -> str | None:
    return hooks.delivery_id(headers.get("Idempotency-Key")) or hooks.delivery_id(headers.get("X-Gitlab-Event-UUID"))


def is_ping(event: str) -> bool:
    return False  # GitLab's "Test" sends a sample of the event chosen


def reduce(event: str, payload: dict) -> Hook | Ignored:
    if event in ("Push Hook", "Tag Push Hook"):
        return _reduce_push(payload)
    if event == "Merge Request Hook":
        return _reduce_merge_request(payload)
    return Ignored(f"the {event[:40] or 'unnamed'} event asks for no build "
                   "(send push, tag push and merge request events)")


def _reduce_push(payload: dict) -> Hook | Ignored:
    ref = payload.get("ref")
    if not isinstance(ref, str) or not ref.startswith(("refs/heads/", "refs/tags/")):
        return Ignored(f"a push to {str(ref)[:80]!r}, neither a branch nor a tag")
    deleted = hooks.is_zero(payload.get("after"))
    author = hooks.text(payload.get("user_username") or payload.get("user_name"))
    subject = hooks.text(_message_of(payload, payload.get("after")))
    old = hooks.sha_or_none(payload.get("before"))
    if ref.startswith("refs/tags/"):
        fields = {"tag": hooks.branch(ref[len("refs/tags/"):], "tag"), "old": old,
                  "new": None if deleted else hooks.sha(payload.get("after")), "author": author, "subject": subject}
        return _hook("tag_update", fields, payload)
    name = hooks.branch(ref[len("refs/heads/"):])
    if deleted:
        return _hook("branch_delete", {"branch": name, "old": old, "author": author}, payload)
    return _hook("branch_update", {"branch": name, "old": old, "new": hooks.sha(payload.get("after")),
                                   "author": author, "subject": subject}, payload)


def _message_of(payload: dict, sha) -> str | None:
    commits = payload.get("commits") if isinstance(payload.get("commits"), list) else []
    return next((c.get("message") for c in commits if isinstance(c, dict) and c.get("id") == sha), None)


def _reduce_merge_request(payload: dict) -> Hook | Ignored:
    attributes = dig(payload, "object_attributes", kind=dict) or {}
    action = MERGE_ACTIONS.get(attributes.get("action"))
    if action is None or action == "updated" and not attributes.get("oldrev"):
        return Ignored(f"the merge request action {str(attributes.get('action'))[:40]!r} brings no new commits")
    number = hooks.number(attributes.get("iid"), "merge request iid")
    base = hooks.full_name(dig(payload, "project", "path_with_namespace") or
                           dig(attributes, "target", "path_with_namespace"))
    source, target = attributes.get("source_project_id"), attributes.get("target_project_id")
    same = source is not None and source == target
    head_repo = base if same else dig(attributes, "source", "path_with_namespace")
    fields = hooks.pull_request(action, number, f"refs/merge-requests/{number}/head",
                                dig(attributes, "last_commit", "id"), head_repo, base,
                                head_branch=hooks.text(attributes.get("source_branch")),
                                base_branch=hooks.text(attributes.get("target_branch")),
                                author=hooks.text(dig(payload, "user", "username")),
                                subject=hooks.text(attributes.get("title")))
    if not same:
        fields["fork"] = True  # another project, even one of the same name
    return _hook("pull_request", fields, payload)


def _hook(event: str, fields: dict, payload: dict) -> Hook:
    project = dig(payload, "project", kind=dict) or {}
    urls = hooks.urls(*(project.get(key) for key in ("git_http_url", "git_ssh_url", "http_url", "ssh_url", "web_url")))
    return Hook(event, fields, hooks.full_name(project.get("path_with_namespace")), urls)


def status_request(root: str, token: str, report: dict) -> ApiRequest:
    body = {"state": STATES[report["state"]], "name": report["context"], "description": report["description"]}
    if report.get("target_url"):
        body["target_url"] = report["target_url"]
    project = quote(report["forge_repo"], safe="")
    return ApiRequest(f"{root.rstrip('/')}/projects/{project}/statuses/{report['sha']}",
                      {"Accept": "application/json", "PRIVATE-TOKEN": token}, body)


def unchanged(sent: dict, report: dict) -> bool:
    """GitLab shows one state per name, and refuses to be told the state it has: compare the states alone."""
    return STATES.get(sent.get("state")) == STATES.get(report.get("state"))
