"""The events a worker receives, checked field by field before any of them names a path, a process or a build.

start_work: job, repo, branch, sha, kind, attempt (required), params, queued,
timeout (optional: {}, null, BUILD_TIMEOUT), trusted, approval (hub/fields.py),
push, stage, upstream, plan, rebuild_of (a job of a push in stages);
a field it does not know refuses it (a lost "trusted": false would give an
untrusted job secrets). cancel_work: job, status (CANCELLED or SUPERSEDED),
reason, attempt. Each field passes the one check of its grammar
(trivialci.jobs, git.commands); a worker also refuses a kind it does not
build. A refused start_work that the hub
expects from this worker (the very attempt it handed over) is reported FAILED
with the reason, so that the job ends and the worker is free again; any other
refused event changes nothing but its own record in failed/.
"""

from ..errors import BadInput
from ..git.commands import check_branch, check_repo, check_sha
from ..git.mirror import MAX_COMMIT_TEXT
from ..hub.fields import TRUST_CHECKS
from ..hub.state import HubState
from ..jobs import (BUILD_TIMEOUT, MAX_REASON_CHARS, RUNNING, JobStatus, check_attempt, check_fields, check_job_id,
                    check_kind, check_params, check_plan, check_reason, check_stage, check_text, check_time,
                    check_timeout, check_upstream, iso_now, optional)
from ..spool.delivery import emit

def check_shown(value) -> str:
    """A commit's subject or author, shown in the job's record: one line of text, as long as the hub keeps."""
    return check_text(value, "subject or author", MAX_COMMIT_TEXT).split("\n", 1)[0]


START_WORK_FIELDS = {"job": check_job_id, "repo": check_repo, "branch": check_branch, "sha": check_sha,
                     "kind": check_kind, "attempt": check_attempt, "params": check_params,
                     "queued": optional(check_time), "timeout": check_timeout, **TRUST_CHECKS,
                     "push": check_job_id, "stage": check_stage, "upstream": check_upstream, "plan": check_plan,
                     "rebuild_of": check_job_id,  # a job of a push in stages (hub/stages.py)
                     "subject": optional(check_shown), "author": optional(check_shown)}
STOP_STATUSES = (JobStatus.CANCELLED, JobStatus.SUPERSEDED)


def check_start_work(package, kind: str | None = None) -> dict:
    """A start_work payload with every field checked and the defaults filled in; `kind`: the kind this worker builds."""
    if not isinstance(package, dict):
        raise BadInput("bad start_work: its payload must be a JSON object")
    checked = {"params": {}, "queued": None, "timeout": BUILD_TIMEOUT,
               **check_fields(package, START_WORK_FIELDS, ("job", "repo", "branch", "sha", "kind", "attempt"),
                              "start_work")}
    if kind is not None and checked["kind"] != kind:
        raise BadInput(f"this worker builds kind {kind}, not kind {checked['kind']}: the hub hands a job only to a "
                       "worker of its kind")
    return checked


def check_stop(status, reason) -> tuple[JobStatus, str]:
    """Why a job is asked to stop (cancel_work): CANCELLED or SUPERSEDED, and a reason for a person."""
    if not isinstance(status, str) or status not in {s.value for s in STOP_STATUSES}:
        raise BadInput(f"bad status {status!r:.80} to stop a job with: CANCELLED or SUPERSEDED")
    return JobStatus(status), check_reason(reason)


def refuse_start_work(package, worker: str, spool, refusal: Exception) -> bool:
    """Report FAILED for a refused start_work if the hub expects that very attempt from this worker; whether it did.

    The hub then frees the worker when it sends work_required naming that job and attempt.
    """
    job_id, attempt = _ids(package)
    job = HubState(spool).job(job_id) if job_id else None
    if not job or job.get("worker") != worker or job.get("attempt") != attempt \
            or job.get("status") not in {s.value for s in RUNNING}:
        return False
    reason = f"refused by worker {worker}: {refusal}"
    emit("work_status", {"job": job_id, "status": JobStatus.FAILED.value, "attempt": attempt, "worker": worker,
                         "ended": iso_now(), "exit_code": None, "reason": reason[:MAX_REASON_CHARS]},
         to="hub", spool=spool)
    emit("work_done", {"job": job_id, "worker": worker, "status": JobStatus.FAILED.value}, to="hub", spool=spool)
    return True


def _ids(package) -> tuple[str | None, int | None]:
    """The job id and attempt of a package, if those two at least are good."""
    try:
        return check_job_id(package.get("job")), check_attempt(package.get("attempt"))
    except (BadInput, AttributeError):
        return None, None
