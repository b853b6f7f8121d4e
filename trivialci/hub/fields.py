"""The fields of the events the hub receives: for each event, each field with the check of its grammar, type, range.

Anyone who can write the spool can drop any event, so the code that receives
one checks it here, with one function per grammar (trivialci.jobs,
spool.layout.check_node_name, git.commands), before anything is read or
written: a field that fails its check refuses the whole event (BadInput: the
script exits with one line, the event goes to failed/).

work_status and work_required are folded into state/ (HubState.apply), and
branch_update is passed on into it, so a field they do not know is refused
too: nothing unchecked is stored, and nothing is lost on the way ("trusted":
false must reach the worker). work_done ignores fields it does not use. A job's
first work_status must say what the job is (repo, branch, sha, kind: the
QUEUED that branch_update sends); a status for a job the hub never queued is
refused. docs/protocol.md ("Fields of the flow") has the same tables.
"""

import re

from ..errors import BadInput
from ..forge import hooks
from ..forge.registry import forge_named
from ..git.commands import check_branch, check_repo, check_sha
from ..jobs import (check_attempt, check_fields, check_job_id, check_kind, check_params, check_plan, check_reason,
                    check_request_id, check_stage, check_status, check_text, check_time, check_upstream, optional)
from ..spool.layout import check_node_name

PROCESS = re.compile(r"\d{1,10}@[A-Za-z0-9][A-Za-z0-9._-]{0,252}\Z")  # PID@HOST, from a worker's heartbeat
URL = re.compile(r"https?://[!-~]{1,2040}\Z")  # printable ASCII, no space: a link the web UI shows
MIN_EXIT_CODE, MAX_EXIT_CODE = -64, 255  # a signal's number, negated; or an exit status
MAX_APPROVER_CHARS = 200
MAX_SECONDS = 10 * 366 * 86400.0


def check_worker_process(value) -> str:
    """"PID@HOST" of the process that ran a worker when the job was handed to it."""
    if isinstance(value, str) and PROCESS.match(value):
        return value
    raise BadInput(f"bad worker_process {value!r:.80}: PID@HOST, HOST letters, digits, '.', '_' or '-'")


def check_log_url(value) -> str:
    """Where a worker serves a job's live log: an http(s) URL."""
    if isinstance(value, str) and URL.match(value):
        return value
    raise BadInput(f"bad log_url {value!r:.80}: an http:// or https:// URL of printable ASCII, at most 2048")


def check_exit_code(value) -> int:
    if type(value) is int and MIN_EXIT_CODE <= value <= MAX_EXIT_CODE:
        return value
    raise BadInput(f"bad exit_code {value!r:.80}: an integer from {MIN_EXIT_CODE} (a signal) to {MAX_EXIT_CODE}")


def check_seconds(value) -> float:
    """A duration the hub computes again (queue_wait, run_time): a number of seconds, less than ten years either way
    (a clock that is off can make one negative)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and -MAX_SECONDS <= value <= MAX_SECONDS:
        return value
    raise BadInput(f"bad duration {value!r:.80}: a number of seconds, at most {MAX_SECONDS:g} either way")


def _status_word(value) -> str:
    return check_status(value).value


def check_trusted(value) -> bool:
    """Whether a job is trusted: only JSON true is; anything else given ("false", null, 0...) is False.

    Nothing is refused here, so that an untrusted job is never turned away for
    how it said so: it runs, without secrets (worker/secrets.py).
    """
    return value is True


def check_approval(value) -> dict:
    """A maintainer's approval of an untrusted job: an object of "by" (who, at most 200 characters), "secrets"
    (JSON true gives the job secrets; anything else is false), "sha" (the commit seen) and "at" (when)."""
    if not isinstance(value, dict):
        raise BadInput(f"bad approval {value!r:.80}: an object such as {{\"by\": NAME, \"secrets\": true}}")
    return check_fields(value, APPROVAL_FIELDS, (), "approval")


APPROVAL_FIELDS = {"by": lambda value: check_text(value, "approver", MAX_APPROVER_CHARS), "secrets": check_trusted,
                   "sha": check_sha, "at": check_time}
TRUST_CHECKS = {"trusted": check_trusted, "approval": optional(check_approval)}


def _forge_name(name) -> str:
    forge_named(name)
    return name


def _shown_text(value):
    """An author or commit subject from a forge: one printable line, bounded (None if it is not text)."""
    return hooks.text(value)


# What a webhook adds to a push (trivialci/forge/receive.py): each checked like the rest.
FORGE_CHECKS = {"forge": optional(_forge_name), "forge_repo": optional(hooks.full_name), "author": _shown_text,
                "subject": _shown_text, "delivery": optional(hooks.delivery_id)}
# What a job of a forge's repository, or of a pull request, carries (pipeline/pull_request.py, hub/approval.py).
JOB_FORGE_CHECKS = {"forge": optional(_forge_name), "forge_repo": optional(hooks.full_name), "author": _shown_text,
                    "subject": _shown_text, "pr": optional(hooks.number),
                    "head_repo": optional(hooks.full_name_or_none), "held_since": optional(check_time)}
UPDATE_FIELDS = {
    "job": check_job_id, "status": _status_word, "attempt": check_attempt,
    "repo": check_repo, "branch": check_branch, "sha": check_sha, "kind": check_kind,
    "params": check_params, "request": optional(check_request_id),
    "queued": optional(check_time), "dispatched": optional(check_time), "started": optional(check_time),
    "ended": optional(check_time), "worker": optional(check_node_name),
    "worker_process": optional(check_worker_process), "log_url": optional(check_log_url),
    "exit_code": optional(check_exit_code), "reason": optional(check_reason),
    "queue_wait": optional(check_seconds), "run_time": optional(check_seconds), **TRUST_CHECKS,
    "verdict": optional(_status_word),  # an UNSTORED job's own result (the store refused its record or files)
    **JOB_FORGE_CHECKS,
    **{"stage": optional(check_stage), "push": optional(check_job_id), "upstream": optional(check_upstream),
       "plan": optional(check_plan), "rebuild_of": optional(check_job_id)},  # a job of a push in stages (hub/stages.py)
}
JOB_FIELDS = ("repo", "branch", "sha", "kind")  # what a job is: its first update must say it

WORK_REQUIRED_FIELDS = {"worker": check_node_name, "kind": check_kind, "after": optional(check_job_id),
                        "attempt": optional(check_attempt)}
WORK_DONE_FIELDS = {"job": check_job_id, "worker": check_node_name, "status": _status_word}
REBUILD_FIELDS = {"job": check_job_id, "downstream": lambda value: value is True, "request": optional(check_request_id)}
BRANCH_UPDATE_FIELDS = {"repo": check_repo, "branch": check_branch, "old": optional(check_sha), "new": check_sha,
                        "params": check_params, "request": optional(check_request_id), **TRUST_CHECKS,
                        **FORGE_CHECKS}


def check_work_status(update) -> dict:
    """A work_status payload, every field checked (a sha in lower case); BadInput says which field is wrong."""
    return check_fields(_object(update, "work_status"), UPDATE_FIELDS, ("job", "status", "attempt"), "work_status")


def check_new_job(job: dict) -> dict:
    """A job the hub learns of must be a whole one (what branch_update queues), not a stray status."""
    missing = [field for field in JOB_FIELDS if job.get(field) is None]
    if missing:
        raise BadInput(f"job {job.get('job')} was never queued here: a first update must give {', '.join(missing)}")
    return job


def check_work_required(payload) -> dict:
    """A work_required payload: worker, kind; after a job also "after" (the job) and "attempt"."""
    return check_fields(_object(payload, "work_required"), WORK_REQUIRED_FIELDS, ("worker", "kind"), "work_required")


def check_work_done(payload) -> dict:
    """A work_done payload: job, worker, status (its final status came as work_status before)."""
    return check_fields(_object(payload, "work_done"), WORK_DONE_FIELDS, WORK_DONE_FIELDS, "work_done", strict=False)


def check_branch_update(payload) -> dict:
    """A branch_update payload: repo, branch, new (and old: a sha or null), params, request, trusted, approval;
    params {} if none. A field it does not know is refused: it would be dropped, and one that says who may have
    secrets must never be lost on the way."""
    checked = check_fields(_object(payload, "branch_update"), BRANCH_UPDATE_FIELDS, ("repo", "branch", "new"),
                           "branch_update")
    return {**checked, "params": check_params(checked.get("params"))}


def check_rebuild(payload) -> dict:
    """A rebuild payload (`trivialci rebuild`): job, downstream (only JSON true is), request."""
    return check_fields(_object(payload, "rebuild"), REBUILD_FIELDS, ("job",), "rebuild")


def _object(payload, what: str) -> dict:
    if not isinstance(payload, dict):
        raise BadInput(f"bad {what}: its payload must be a JSON object")
    return payload
