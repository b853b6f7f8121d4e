"""Commit statuses: what a job's change says on the forge, and the one HTTP request that says it.

A report is what pipeline/commit_status.py queues (outbox.py) and the hub's
sender posts (sender.py), a JSON object:

    forge        github | gitea | gitlab
    forge_repo   OWNER/NAME (GitLab: GROUP/.../NAME)
    sha          the commit the status is about
    context      trivialci/KIND (GitLab calls it "name")
    state        pending | running | success | failure | error | canceled; each forge module maps these
                 to its own words (GitHub and Gitea: running is pending, canceled is error; GitLab:
                 failure and error are failed)
    description  for people, at most 140 characters: "queued", "building", "passed in 42 s", "failed: exit status 3"
    target_url   the job's page, or null
    order        JOB/ATTEMPT/STEP: of two reports for one (sha, context), the greater order wins
    job          the job it is about

Requests are made with urllib, a timeout, no redirect followed (a token is
never sent on to another address), and only to http(s) API roots.
"""

import http.client
import json
import urllib.error
import urllib.request
from dataclasses import dataclass
from urllib.parse import urlsplit

from ..errors import BadInput
from ..jobs import JobStatus

STATES = ("pending", "running", "success", "failure", "error", "canceled")
MAX_DESCRIPTION = 140
TIMEOUT = 10.0
USER_AGENT = "TrivialCi"
STEPS = {JobStatus.HELD: 0, JobStatus.WAITING: 0, JobStatus.QUEUED: 0, JobStatus.STARTING: 1, JobStatus.BUILDING: 2, JobStatus.LOST: 3}


@dataclass(frozen=True)
class ApiRequest:
    """A POST of a JSON body to a forge's API; the headers carry the token, so this is never logged."""

    url: str
    headers: dict
    body: dict


class ApiError(Exception):
    """A status the forge did not take: `retry` says whether trying again later can help, `after` when."""

    def __init__(self, message: str, retry: bool, after: float | None = None, unreachable: bool = False):
        super().__init__(message)
        self.retry, self.after, self.unreachable = retry, after, unreachable


def describe(job: dict) -> tuple[str, str]:
    """(state, description) for a job's status, in the words of the report; BadInput for an unknown status."""
    status, reason = _status(job), str(job.get("reason") or "")
    words = {JobStatus.HELD: ("pending", f"waiting for approval: trivialci approve {job.get('job')}"),
             JobStatus.WAITING: ("pending", "waiting for an earlier stage"),
             JobStatus.QUEUED: ("pending", "queued"), JobStatus.STARTING: ("running", "starting"),
             JobStatus.BUILDING: ("running", "building"), JobStatus.LOST: ("pending", "worker lost; queued again"),
             JobStatus.PASSED: ("success", f"passed in {_seconds(job.get('run_time'))}"),
             JobStatus.FAILED: ("failure", f"failed: {reason or 'no reason given'}"),
             JobStatus.CANCELLED: ("canceled", f"cancelled: {reason}"),
             JobStatus.SUPERSEDED: ("canceled", f"superseded: {reason}"),
             JobStatus.SKIPPED: ("canceled", reason or "skipped")}
    state, description = words[status]
    return state, short(description)


def order_of(job: dict) -> str:
    """JOB/ATTEMPT/STEP: job ids sort by queue time, a later attempt and a later step of one attempt come after."""
    attempt = job.get("attempt") or 1
    if isinstance(attempt, bool) or not isinstance(attempt, int) or not 0 < attempt < 10 ** 6:
        raise BadInput(f"bad attempt {str(attempt)[:20]!r}: a positive integer")
    return f"{job.get('job')}/{attempt:06d}/{STEPS.get(_status(job), 4)}"


def _status(job: dict) -> JobStatus:
    try:
        return JobStatus(job.get("status"))
    except ValueError:
        raise BadInput(f"bad job status {str(job.get('status'))[:20]!r}: one of {', '.join(JobStatus)}") from None


def short(text: str) -> str:
    return text if len(text) <= MAX_DESCRIPTION else text[:MAX_DESCRIPTION - 1] + "…"


def _seconds(value) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return "? s"
    return f"{value:.0f} s" if value >= 10 else f"{value:.1f} s"


def check_api_root(url: str, variable: str) -> str:
    """An http(s) URL without credentials, query or fragment, for the API root in `variable`; ValueError if not."""
    parts = urlsplit(url or "")
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.username or parts.query \
            or parts.fragment or not url.isprintable():
        raise ValueError(f"{variable}={url!r} is not an http(s) URL of an API root (e.g. https://HOST/api/v1)")
    return url.rstrip("/")


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None  # urllib then raises the 3xx as an HTTPError: the token stays with the address given


_OPENER = urllib.request.build_opener(_NoRedirect)


def post(request: ApiRequest, timeout: float = TIMEOUT) -> int:
    """POST the request; its HTTP status, or ApiError saying what went wrong (never the token)."""
    data = json.dumps(request.body).encode()
    headers = {**request.headers, "Content-Type": "application/json", "User-Agent": USER_AGENT}
    sent = urllib.request.Request(request.url, data=data, headers=headers, method="POST")
    try:
        with _OPENER.open(sent, timeout=timeout) as response:
            response.read(65536)
            return response.status
    except urllib.error.HTTPError as error:
        raise _refused(error, urlsplit(request.url).netloc) from None
    except (urllib.error.URLError, http.client.HTTPException, OSError) as error:  # refused, reset, timed out
        reason = getattr(error, "reason", None) or error
        raise ApiError(f"cannot reach {urlsplit(request.url).netloc}: {reason}", retry=True,
                       unreachable=True) from None


def _refused(error: urllib.error.HTTPError, host: str) -> ApiError:
    try:
        said = error.read(300).decode("utf-8", "replace")
    except OSError:
        said = ""
    said = " ".join("".join(c if c.isprintable() else " " for c in said).split())[:200]
    after = error.headers.get("Retry-After", "") if error.headers else ""
    retry = error.code >= 500 or error.code in (408, 429) or error.code == 403 and bool(after)
    hint = " (a redirect, not followed: check the API root)" if 300 <= error.code < 400 else ""
    return ApiError(f"{host} answered {error.code}{hint}: {said or error.reason}", retry,
                    float(after) if after.isdigit() else None)
