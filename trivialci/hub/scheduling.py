"""Scheduling on the hub: queue jobs, hand them to idle workers, boot and lose workers.

The hub's scripts call these; they change state/ at once (the hub runs one
script at a time, so no two scripts hand out one package) and emit every job
change as a work_status event, and every worker they find lost as a
worker_status event, to the hub itself (eventlog.record), so done/ keeps the
history that state/ is rebuilt from.

  a worker is alive   while its worker.json is younger than LOST_AFTER seconds
  dispatch            oldest queued job of a kind -> an idle, alive worker of that kind:
                      start_work to the worker, STARTING for the job
  boot                no alive worker for a kind with queued jobs: a boot_worker event to
                      the hub (its script starts one), at most once per BOOT_PATIENCE s
  lost                a busy worker that is not alive: its job is LOST, then QUEUED again
                      as the next attempt
"""

import json
import os

from ..errors import BadInput
from . import eventlog, pause
from ..spool.delivery import emit
from ..spool.heartbeat import read_heartbeat
from .state import HubState, heartbeat_age
from .fields import check_log_url, check_work_required, check_worker_process
from ..spool.layout import worker_dir
from ..errors import TrivialCiError
from ..jobs import (BUILD_TIMEOUT, MAX_ATTEMPT, RUNNING, STAGE_FIELDS, UNDISPATCHED, JobStatus, check_params,
                    check_timeout, iso_now)
from ..store import open_store

LOST_AFTER = float(os.environ.get("TRIVIALCI_LOST_AFTER", 30.0))  # the hub's environment may shorten it

BOOT_PATIENCE = 2 * LOST_AFTER  # a booted worker has this long to show its heartbeat
RECORD_FIELDS = ("job", "repo", "branch", "sha", "kind", "status", "worker", "attempt", "queued", "started", "ended",
                 "queue_wait", "run_time", "exit_code", "reason",
                 *STAGE_FIELDS)
# A job's trust, as its event gave it ("trusted": false for a fork's pull request; "approval": {"by", "secrets"}):
# carried to the worker as it is, which judges it (worker/secrets.py, gets_secrets).
TRUST_FIELDS = ("trusted", "approval")
ATTEMPT_FIELDS = ("worker", "worker_process", "log_url", "dispatched", "started", "ended", "exit_code", "reason", "queue_wait", "run_time")


def record_status(state: HubState, update: dict) -> dict:
    """Apply a job change now and emit it, so the event log holds it too."""
    return eventlog.record(state, "work_status", {**update, "status": JobStatus(update["status"]).value})


def record_worker(state: HubState, worker: dict, word: str, reason: str) -> None:
    """Note a worker as idle or lost now, and emit it, so the event log holds it too."""
    eventlog.record(state, "worker_status", {"worker": worker["name"], "kind": worker.get("kind", ""),
                                             "state": word, "reason": reason})


def queue_job(state: HubState, package: dict) -> dict:
    return record_status(state, {**package, "status": JobStatus.QUEUED, "queued": iso_now()})


def alive(spool, worker: str) -> bool:
    age = heartbeat_age(spool, worker)
    return age is not None and age < LOST_AFTER


def dispatch(state: HubState, workers: list[str] | None = None) -> list[tuple[str, str]]:
    """Hand the oldest queued job of each kind to an idle worker of that kind.

    The candidates are the idle workers (state/idle/, an index: a hub whose
    thousand workers are busy reads none of their files), or only those named
    in `workers`: a worker that asks for work needs no other worker's file.
    """
    handed = []
    if (line := pause.notice_by_hand(state)) is not None:
        print(line, flush=True)  # into the log of the event whose script dispatches
    if state.paused() or not any(state.queued(kind) for kind in state.queued_kinds()):
        return handed
    candidates = state.idle_workers() if workers is None else [w for w in map(state.worker, workers) if w]
    for worker in candidates:
        if worker["state"] != "idle" or not state.queued(worker["kind"]):
            continue
        if not alive(state.node_dir.spool, worker["name"]):
            record_worker(state, worker, "lost", f"worker {worker['name']} stopped answering")
            continue
        job = _next_job(state, worker["kind"])
        if job:
            handed.append((worker["name"], _hand_over(state, worker, job)))
    return handed


def _next_job(state: HubState, kind: str) -> tuple[dict, float] | None:
    """The oldest queued job of `kind` that can be handed over, with its build timeout.

    A queue entry without a queued job behind it (its file removed by hand) is
    passed over; a job whose timeout cannot be used (state/ edited by hand) ends
    FAILED with the reason: neither holds up the jobs behind it.
    """
    for job_id in state.queued(kind):
        job = state.job(job_id)
        if not job or job.get("status") != JobStatus.QUEUED:
            continue
        try:
            return job, check_timeout(check_params(job.get("params")).get("timeout", BUILD_TIMEOUT))
        except BadInput as refusal:
            end_queued(state, job, JobStatus.FAILED, f"not dispatched: {refusal}")
    return None


def _hand_over(state: HubState, worker: dict, queued: tuple[dict, float]) -> str:
    job, timeout = queued
    job_id = job["job"]
    package = {key: job.get(key) for key in ("job", "repo", "branch", "sha", "kind", "attempt", "params", "queued")}
    package.update({key: job[key] for key in STAGE_FIELDS if job.get(key) is not None})  # hub/stages.py
    package.update({key: job[key] for key in TRUST_FIELDS if key in job})  # absent: trusted (a push)
    package.update({key: job[key] for key in ("subject", "author") if job.get(key)})  # into the stored record
    record_status(state, {"job": job_id, "status": JobStatus.STARTING, "worker": worker["name"],
                          "worker_process": _process_of(state, worker["name"]), "attempt": job["attempt"],
                          "dispatched": iso_now(), "log_url": _log_url_of(state, worker["name"], job_id)})
    state.set_worker(worker["name"], worker["kind"], "busy", job_id)
    emit("start_work", {**package, "timeout": timeout, "_timeout": timeout + 600},
         to=f"worker:{worker['name']}", spool=state.node_dir.spool)
    return job_id


def kinds_without_workers(state: HubState) -> list[str]:
    """Kinds with queued jobs and no alive worker that could take them.

    Workers are read only when a kind waits, and only until each waiting kind
    has an alive one: a push to a hub of a thousand workers reads a few files.
    """
    unserved = [kind for kind in state.queued_kinds() if state.queued(kind)]
    spool = state.node_dir.spool
    for name in state.worker_names() if unserved else []:
        worker = state.worker(name)
        if worker and worker["kind"] in unserved and worker["state"] != "lost" and alive(spool, name):
            unserved.remove(worker["kind"])
            if not unserved:
                break
    return unserved


def boot_workers(state: HubState) -> list[str]:
    """Ask for a worker for each kind that needs one (the boot_worker script starts it)."""
    booted = []
    for kind in kinds_without_workers(state):
        asked = state.boot_asked(kind)
        if asked is not None and asked < BOOT_PATIENCE:
            continue
        state.note_boot_asked(kind)
        emit("boot_worker", {"kind": kind, "name": f"{kind}-1"}, to="hub", spool=state.node_dir.spool)
        booted.append(kind)
    return booted


def requeue_lost(state: HubState) -> list[str]:
    """Jobs of busy workers that stopped beating: LOST, then QUEUED as the next attempt."""
    requeued = []
    for worker in state.workers():
        if worker["state"] != "busy" or alive(state.node_dir.spool, worker["name"]):
            continue
        job = state.job(worker["job"]) if worker.get("job") else None
        record_worker(state, worker, "lost", f"worker {worker['name']} stopped answering")
        if job and JobStatus(job["status"]) in RUNNING:
            _lose(state, job, f"worker {worker['name']} stopped answering")
            requeued.append(job["job"])
    return requeued


def end_job(state: HubState, job: dict, status: JobStatus, reason: str) -> bool:
    """End a job that is not over, however far it got: at once when no worker has it (held, queued, waiting),
    on its worker when one has it (the worker reports `status`); False for a job that is over already."""
    if job["status"] in UNDISPATCHED:
        end_queued(state, job, status, reason)
    elif JobStatus(job["status"]) in RUNNING and job.get("worker"):
        cancel_running(state, job, status, reason)
    else:
        return False
    return True


def end_queued(state: HubState, job: dict, status: JobStatus, reason: str) -> dict:
    """End a job that no worker has (superseded, cancelled); its record goes to the store first, and a
    record the store refuses makes the job UNSTORED (its "verdict" is `status`), with the reason."""
    update = {"job": job["job"], "status": JobStatus(status).value, "attempt": job["attempt"], "reason": reason,
              "ended": iso_now()}
    problem = _store_record({**job, **update})
    if problem:
        update = {**update, "status": JobStatus.UNSTORED, "verdict": update["status"], "reason": f"{reason}; {problem}"}
    return record_status(state, update)


def _store_record(job: dict) -> str | None:
    """Write the job's record to $TRIVIALCI_STORE (if set); what went wrong, or None."""
    store_url = os.environ.get("TRIVIALCI_STORE")
    if not store_url:
        return None
    record = {key: job.get(key) for key in RECORD_FIELDS}
    try:
        open_store(store_url).put_bytes(f"jobs/{job['job']}/job.json", (json.dumps(record, indent=2) + "\n").encode())
    except (TrivialCiError, OSError) as error:
        return f"its record could not be written to {store_url}: {error}"
    return None


def worker_ready(state: HubState, payload: dict) -> bool:
    """A worker asks for work. False when the request is stale (it still has a job the hub knows of).

    A worker sends work_required when it starts, and after each job with
    "after": JOB and "attempt": N. While the hub has handed the worker a job
    that is not final, only a request naming that very attempt frees it; any
    other request is an echo of the past, unless the worker's process changed
    since the hand-over (it restarted): then that job is lost and queued again.
    """
    payload = check_work_required(payload)
    name = payload["worker"]
    job = state.unfinished_job(name, payload)
    if job and _process_of(state, name) == job.get("worker_process"):
        return False
    if job:  # a rebuild cannot see heartbeats: what was decided from them goes into the event log
        _lose(state, job, f"worker {name} restarted")
        record_worker(state, {"name": name, "kind": payload["kind"]}, "idle", f"worker {name} restarted")
    state.apply("work_required", payload)
    return True


def _heartbeat(state: HubState, worker: str) -> dict:
    """The worker's worker.json, or {} when it has none (stopped, or never started)."""
    return read_heartbeat(worker_dir(state.node_dir.spool, worker)) or {}


def _process_of(state: HubState, worker: str) -> str | None:
    """"pid@host" of the process that runs a worker now, from its heartbeat (None: none, or not that shape)."""
    beat = _heartbeat(state, worker)
    return _passes(check_worker_process, f"{beat['pid']}@{beat['host']}") if "pid" in beat and "host" in beat \
        else None


def _log_url_of(state: HubState, worker: str, job_id: str) -> str | None:
    """Where the worker serves the job's live log, from the log_url in its heartbeat (None: it serves none)."""
    base = _heartbeat(state, worker).get("log_url")
    return _passes(check_log_url, f"{base.rstrip('/')}/logs/{job_id}") if isinstance(base, str) and base else None


def _passes(check, value):
    """`value` if it passes `check`, else None: a heartbeat is anyone's file, and it must not stop a hand-over."""
    try:
        return check(value)
    except BadInput:
        return None


def _lose(state: HubState, job: dict, reason: str) -> None:
    """LOST, then QUEUED as the next attempt; the last attempt (MAX_ATTEMPT) ends FAILED instead."""
    if job["attempt"] >= MAX_ATTEMPT:
        end_queued(state, job, JobStatus.FAILED, f"{reason}; it was tried {MAX_ATTEMPT} times")
        return
    record_status(state, {"job": job["job"], "status": JobStatus.LOST, "attempt": job["attempt"], "reason": reason})
    record_status(state, {"job": job["job"], "status": JobStatus.QUEUED, "attempt": job["attempt"] + 1,
                          **{field: None for field in ATTEMPT_FIELDS}})


def cancel_running(state: HubState, job: dict, status: JobStatus, reason: str) -> None:
    """Ask the job's worker to stop it; the worker reports `status` when it has."""
    emit("cancel_work", {"job": job["job"], "attempt": job["attempt"], "status": JobStatus(status).value,
                         "reason": reason}, to=f"worker:{job['worker']}", spool=state.node_dir.spool)
