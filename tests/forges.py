"""Forges for tests: deliveries signed as each forge documents it, and a stand-in for each status API.

`deliver` POSTs over real HTTP with the headers GitHub, Gitea/Forgejo or GitLab
send (see trivialci/forge/github.py, gitea.py, gitlab.py for the documents);
the payload builders give the fields those forges send, and no more than the
flow reads. `StatusAPI` is an HTTP server on 127.0.0.1 that checks the method,
path, headers and body of every request as the forge's API would, records it,
and can go down and come back on the same port.
"""

import hashlib
import hmac
import http.client
import json
import re
import socket
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote

SECRET = "It's a Secret to Everybody"
TOKEN = "tok-3f9a1c-never-in-a-file"
ZERO = "0" * 40


# --- deliveries ---------------------------------------------------------------

def signed_headers(forge: str, event: str, body: bytes, secret: str = SECRET, delivery: str | None = "auto") -> dict:
    """The headers `forge` sends with a delivery of `event` (delivery None: none; "auto": a fresh UUID)."""
    delivery = str(uuid.uuid4()) if delivery == "auto" else delivery
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    headers = {"Content-Type": "application/json"}
    if forge == "github":
        headers.update({"X-GitHub-Event": event, "X-Hub-Signature-256": f"sha256={digest}",
                        "User-Agent": "GitHub-Hookshot/test"})
        headers.update({"X-GitHub-Delivery": delivery} if delivery else {})
    elif forge == "gitea":  # Forgejo's headers: X-Forgejo-* and the Gitea, Gogs and GitHub ones
        for prefix in ("X-Forgejo", "X-Gitea", "X-Gogs"):
            headers.update({f"{prefix}-Event": event, f"{prefix}-Signature": digest})
            headers.update({f"{prefix}-Delivery": delivery} if delivery else {})
        headers.update({"X-GitHub-Event": event, "X-Hub-Signature-256": f"sha256={digest}"})
    else:
        headers.update({"X-Gitlab-Event": event, "X-Gitlab-Token": secret, "User-Agent": "GitLab/test"})
        headers.update({"X-Gitlab-Event-UUID": delivery, "Idempotency-Key": delivery} if delivery else {})
    return headers


def post(url: str, body: bytes, headers: dict, timeout: float = 30) -> tuple[int, str]:
    """(status, text) of a real POST to `url` (http://HOST:PORT/PATH)."""
    host_port, _, path = url.removeprefix("http://").partition("/")
    host, _, port = host_port.rpartition(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=timeout)
    try:
        connection.request("POST", "/" + path, body, headers)
        response = connection.getresponse()
        return response.status, response.read().decode()
    finally:
        connection.close()


def deliver(base: str, forge: str, event: str, payload, secret: str = SECRET, delivery: str | None = "auto",
            **overrides) -> tuple[int, str]:
    """POST `payload` (a dict, or the raw bytes) to BASE/hooks/FORGE, signed as `forge` signs."""
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    headers = {**signed_headers(forge, event, body, secret, delivery), **overrides}
    return post(f"{base.rstrip('/')}/{forge}", body, {k: v for k, v in headers.items() if v is not None})


PUSH_EVENT = {"github": "push", "gitea": "push", "gitlab": "Push Hook"}
PULL_EVENT = {"github": "pull_request", "gitea": "pull_request", "gitlab": "Merge Request Hook"}


def push(forge: str, full_name: str, branch: str, after: str, before: str = ZERO, message: str = "a change",
         author: str = "alice", ref: str | None = None) -> dict:
    ref = ref or f"refs/heads/{branch}"
    if forge == "gitlab":
        return {"object_kind": "push", "event_name": "push", "ref": ref, "before": before, "after": after,
                "checkout_sha": None if after == ZERO else after, "user_username": author, "user_name": author.title(),
                "project": gitlab_project(full_name), "commits": [{"id": after, "message": message}],
                "total_commits_count": 1}
    return {"ref": ref, "before": before, "after": after, "created": before == ZERO, "deleted": after == ZERO,
            "forced": False, "head_commit": None if after == ZERO else {"id": after, "message": message},
            "pusher": {"name": author, "login": author}, "sender": {"login": author},
            "repository": repository(forge, full_name)}


def pull(forge: str, full_name: str, number: int, head_sha: str, head_repo: str | None, action: str = "opened",
         author: str = "mallory", title: str = "a pull request") -> dict:
    """A pull request (GitLab: merge request) event; head_repo None: the fork was deleted."""
    if forge == "gitlab":
        source_id = 1 if head_repo == full_name else 2
        attributes = {"iid": number, "action": {"opened": "open", "updated": "update", "reopened": "reopen",
                                                "closed": "close"}.get(action, action),
                      "source_project_id": source_id, "target_project_id": 1, "title": title,
                      "source_branch": "feature", "target_branch": "main",
                      "last_commit": {"id": head_sha, "message": title},
                      "source": gitlab_project(head_repo or "gone/gone"), "target": gitlab_project(full_name)}
        if action == "updated":
            attributes["oldrev"] = "1" * 40
        return {"object_kind": "merge_request", "event_type": "merge_request", "user": {"username": author},
                "project": gitlab_project(full_name), "object_attributes": attributes}
    github_action = {"updated": "synchronize" if forge == "github" else "synchronized"}.get(action, action)
    head = {"ref": "feature", "sha": head_sha, "repo": {"full_name": head_repo} if head_repo else None}
    return {"action": github_action, "number": number,
            "pull_request": {"number": number, "title": title, "user": {"login": author}, "head": head,
                             "base": {"ref": "main", "sha": "2" * 40, "repo": {"full_name": full_name}}},
            "repository": repository(forge, full_name), "sender": {"login": author}}


def repository(forge: str, full_name: str) -> dict:
    host = "github.com" if forge == "github" else "git.example.com"
    return {"full_name": full_name, "name": full_name.split("/")[-1], "clone_url": f"https://{host}/{full_name}.git",
            "ssh_url": f"git@{host}:{full_name}.git", "html_url": f"https://{host}/{full_name}"}


def gitlab_project(path: str) -> dict:
    return {"id": 1, "path_with_namespace": path, "git_http_url": f"https://gitlab.example.com/{path}.git",
            "git_ssh_url": f"git@gitlab.example.com:{path}.git", "web_url": f"https://gitlab.example.com/{path}"}


# --- the status APIs ---------------------------------------------------------

STATUS_PATHS = {"github": re.compile(r"/repos/([^/]+/[^/]+)/statuses/([0-9a-f]{40})\Z"),
                "gitea": re.compile(r"/api/v1/repos/([^/]+/[^/]+)/statuses/([0-9a-f]{40})\Z"),
                "gitlab": re.compile(r"/api/v4/projects/([^/]+)/statuses/([0-9a-f]{40})\Z")}
STATES = {"github": {"pending", "success", "failure", "error"},
          "gitea": {"pending", "success", "error", "failure", "warning"},
          "gitlab": {"pending", "running", "success", "failed", "canceled"}}
SEEN_PATH = "/seen-by-the-test/"  # GET SEEN_PATH + SHA: 200 once a status for SHA was taken
ROOTS = {"github": "", "gitea": "/api/v1", "gitlab": "/api/v4"}


class StatusAPI:
    """One forge's commit status API on 127.0.0.1: every request checked, recorded; down() and up() again."""

    def __init__(self, forge: str):
        self.forge, self.requests, self.problems = forge, [], []
        self.answer_with = None  # (status, headers, text) to answer every request with, instead of 201
        self._lock = threading.Lock()
        self.server = None
        self.port = _free_port()
        self.up()

    @property
    def root(self) -> str:
        return f"http://127.0.0.1:{self.port}{ROOTS[self.forge]}"

    def up(self) -> None:
        api = self
        handler = type("Handler", (_APIHandler,), {"api": api})
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def down(self) -> None:
        if self.server:
            self.server.shutdown()
            self.server.server_close()
            self.thread.join()
            self.server = None

    def statuses(self, sha: str | None = None) -> list[dict]:
        """The bodies taken (answered 201), oldest first, of `sha` when given."""
        with self._lock:
            return [r["body"] for r in self.requests if r["answered"] == 201 and (sha is None or r["sha"] == sha)]

    def check(self, method: str, path: str, headers, raw: bytes) -> tuple[str | None, dict | None, str | None]:
        """(problem, body, sha): what is wrong with a request, as the forge would refuse it."""
        match = STATUS_PATHS[self.forge].match(path)
        if method != "POST" or not match:
            return f"{method} {path} is not this API's status endpoint", None, None
        if self.forge == "gitlab" and unquote(match.group(1)).count("/") < 1:
            return f"the project {match.group(1)!r} is not a URL-encoded path", None, None
        problem = self._auth_problem(headers) or _content_problem(headers)
        try:
            body = json.loads(raw)
        except ValueError:
            return "the body is not JSON", None, None
        return problem or self._body_problem(body), body, match.group(2)

    def _auth_problem(self, headers) -> str | None:
        expected = {"github": ("Authorization", f"Bearer {TOKEN}"), "gitea": ("Authorization", f"token {TOKEN}"),
                    "gitlab": ("PRIVATE-TOKEN", TOKEN)}[self.forge]
        if headers.get(expected[0]) != expected[1]:
            return f"no {expected[0]}: {expected[1][:6]}..."
        if self.forge == "github" and (headers.get("Accept") != "application/vnd.github+json"
                                       or not headers.get("X-GitHub-Api-Version") or not headers.get("User-Agent")):
            return "GitHub wants Accept: application/vnd.github+json, X-GitHub-Api-Version and a User-Agent"
        return None

    def _body_problem(self, body) -> str | None:
        name = "name" if self.forge == "gitlab" else "context"
        allowed = {"state", name, "description", "target_url"}
        if not isinstance(body, dict) or set(body) - allowed or body.get("state") not in STATES[self.forge]:
            return f"bad body for {self.forge}: {body!r}"
        if not isinstance(body.get(name), str) or not isinstance(body.get("description"), str):
            return f"{name} and description must be strings: {body!r}"
        return None

    def record(self, entry: dict) -> None:
        with self._lock:
            self.requests.append(entry)
            if entry["problem"]:
                self.problems.append(entry["problem"])


def _content_problem(headers) -> str | None:
    return None if headers.get("Content-Type") == "application/json" else "the Content-Type is not application/json"


class _APIHandler(BaseHTTPRequestHandler):
    api: StatusAPI

    def log_message(self, *args):
        pass

    def do_POST(self):
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        problem, body, sha = self.api.check("POST", self.path, self.headers, raw)
        status, headers, text = self.api.answer_with or ((422, {}, problem) if problem else (201, {}, "{}"))
        self.api.record({"path": self.path, "body": body, "sha": sha, "problem": problem, "answered": status,
                         "headers": dict(self.headers)})
        self.send_response(status)
        for name, value in {**headers, "Content-Type": "application/json"}.items():
            self.send_header(name, value)
        data = (text or "").encode()
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        if self.path.startswith(SEEN_PATH):  # the tests' own question, never one a hub asks: has SHA had a status?
            seen = any(r["sha"] == self.path[len(SEEN_PATH):] for r in self.api.requests if r["answered"] == 201)
            self.send_response(200 if seen else 404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.api.record({"path": self.path, "body": None, "sha": None, "problem": f"GET {self.path}",
                         "answered": 405, "headers": dict(self.headers)})
        self.send_response(405)
        self.send_header("Content-Length", "0")
        self.end_headers()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
