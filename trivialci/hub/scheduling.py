"""Scheduling on the hub: queue jobs, hand them to idle workers, boot and lose workers.

The hub's scripts call these; they change state/ at once (the hub runs one
script at a time, so no two scripts hand out one package) and emit every job
change as a work_status event to the hub itself, so done/ keeps the history
that state/ is rebuilt from.

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
import time

from ..spool.delivery import emit
from ..spool.heartbeat import read_heartbeat
from .state import HubState, check_name, heartbeat_age
from ..spool.layout import worker_dir
from ..jobs import RUNNING, JobStatus, iso_now
from ..store import open_store

LOST_AFTER = float(os.environ.get("TRIVIALCI_LOST_AFTER", 30.0))  # the hub's environment may shorten it

BOOT_PATIENCE = 2 * LOST_AFTER  # a booted worker has this long to show its heartbeat
BUILD_TIMEOUT = 3600.0
RECORD_FIELDS = ("job", "repo", "branch", "sha", "kind", "status", "worker", "attempt", "queued", "started", "ended",
                 "queue_wait", "run_time", "exit_code", "reason")
ATTEMPT_FIELDS = ("worker", "worker_process", "log_url", "dispatched", "started", "ended", "exit_code", "reason", "queue_wait", "run_time")


def record_status(state: HubState, update: dict) -> dict:
    """Apply a job change now and emit it, so the event log holds it too."""
    update = {**update, "status": JobStatus(update["status"]).value}
    job = state.apply_status(update)
    emit("work_status", update, to="hub", spool=state.node_dir.spool)
    return job


def queue_job(state: HubState, package: dict) -> dict:
    return record_status(state, {**package, "status": JobStatus.QUEUED, "queued": iso_now()})


def alive(spool, worker: str) -> bool:
    age = heartbeat_age(spool, worker)
    return age is not None and age < LOST_AFTER


def dispatch(state: HubState, workers: list[str] | None = None) -> list[tuple[str, str]]:
    """Hand the oldest queued job of each kind to an idle worker of that kind.

    `workers` narrows it to those names: a worker that asks for work needs no
    reading of every other worker's file (after each dispatch no idle worker
    waits beside a queued job of its kind, and a tick dispatches to all).
    """
    handed = []
    if state.paused() or not any(state.queued(kind) for kind in state.queued_kinds()):
        return handed
    candidates = state.workers() if workers is None else [w for w in map(state.worker, workers) if w]
    for worker in candidates:
        if worker["state"] != "idle" or not state.queued(worker["kind"]):
            continue
        if not alive(state.node_dir.spool, worker["name"]):
            state.set_worker(worker["name"], worker["kind"], "lost", None)
            continue
        handed.append((worker["name"], _hand_over(state, worker, state.queued(worker["kind"])[0])))
    return handed


def _hand_over(state: HubState, worker: dict, job_id: str) -> str:
    job = state.job(job_id)
    timeout = float(job.get("params", {}).get("timeout", BUILD_TIMEOUT))
    package = {key: job.get(key) for key in ("job", "repo", "branch", "sha", "kind", "attempt", "params", "queued")}
    record_status(state, {"job": job_id, "status": JobStatus.STARTING, "worker": worker["name"],
                          "worker_process": _process_of(state, worker["name"]), "attempt": job["attempt"],
                          "dispatched": iso_now(), "log_url": _log_url_of(state, worker["name"], job_id)})
    state.set_worker(worker["name"], worker["kind"], "busy", job_id)
    emit("start_work", {**package, "timeout": timeout, "_timeout": timeout + 600},
         to=f"worker:{worker['name']}", spool=state.node_dir.spool)
    return job_id


def kinds_without_workers(state: HubState) -> list[str]:
    """Kinds with queued jobs and no alive worker that could take them."""
    spool = state.node_dir.spool
    served = {w["kind"] for w in state.workers() if w["state"] != "lost" and alive(spool, w["name"])}
    return [kind for kind in state.queued_kinds() if state.queued(kind) and kind not in served]


def boot_workers(state: HubState) -> list[str]:
    """Ask for a worker for each kind that needs one (the boot_worker script starts it)."""
    booted = []
    for kind in kinds_without_workers(state):
        marker = state.root / "boots" / f"{kind}.json"
        if marker.exists() and time.time() - marker.stat().st_mtime < BOOT_PATIENCE:
            continue
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text(json.dumps({"kind": kind, "asked": iso_now()}))
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
        state.set_worker(worker["name"], worker["kind"], "lost", None)
        if job and JobStatus(job["status"]) in RUNNING:
            _lose(state, job, f"worker {worker['name']} stopped answering")
            requeued.append(job["job"])
    return requeued


def end_queued(state: HubState, job: dict, status: JobStatus, reason: str) -> dict:
    """End a job that no worker has (superseded, cancelled); its record goes to the store too."""
    ended = record_status(state, {"job": job["job"], "status": status, "attempt": job["attempt"],
                                  "reason": reason, "ended": iso_now()})
    store_url = os.environ.get("TRIVIALCI_STORE")
    if store_url:
        record = {key: ended.get(key) for key in RECORD_FIELDS}
        open_store(store_url).put_bytes(f"jobs/{job['job']}/job.json", (json.dumps(record, indent=2) + "\n").encode())
    return ended


def worker_ready(state: HubState, payload: dict) -> bool:
    """A worker asks for work. False when the request is stale (it still has a job the hub knows of).

    A worker sends work_required when it starts, and after each job with
    "after": JOB and "attempt": N. While the hub has handed the worker a job
    that is not final, only a request naming that very attempt frees it; any
    other request is an echo of the past, unless the worker's process changed
    since the hand-over (it restarted): then that job is lost and queued again.
    """
    name = check_name(payload.get("worker"), "worker name")
    current = state.worker(name)
    job = state.job(current["job"]) if current and current["state"] == "busy" and current.get("job") else None
    if job and JobStatus(job["status"]) in RUNNING and job.get("worker") == name:
        finished = (payload.get("after"), payload.get("attempt")) == (job["job"], job["attempt"])
        if not finished and _process_of(state, name) == job.get("worker_process"):
            return False
        if not finished:
            _lose(state, job, f"worker {name} restarted")
    state.apply("work_required", payload)
    return True


def _heartbeat(state: HubState, worker: str) -> dict:
    """The worker's worker.json, or {} when it has none (stopped, or never started)."""
    return read_heartbeat(worker_dir(state.node_dir.spool, worker).heartbeat) or {}


def _process_of(state: HubState, worker: str) -> str | None:
    """"pid@host" of the process that runs a worker now, from its heartbeat."""
    beat = _heartbeat(state, worker)
    return f"{beat['pid']}@{beat['host']}" if "pid" in beat and "host" in beat else None


def _log_url_of(state: HubState, worker: str, job_id: str) -> str | None:
    """Where the worker serves the job's live log, from the log_url in its heartbeat (None: it serves none)."""
    base = _heartbeat(state, worker).get("log_url")
    return f"{base.rstrip('/')}/logs/{job_id}" if isinstance(base, str) and base else None


def _lose(state: HubState, job: dict, reason: str) -> None:
    record_status(state, {"job": job["job"], "status": JobStatus.LOST, "attempt": job["attempt"], "reason": reason})
    record_status(state, {"job": job["job"], "status": JobStatus.QUEUED, "attempt": job["attempt"] + 1,
                          **{field: None for field in ATTEMPT_FIELDS}})


def cancel_running(state: HubState, job: dict, status: JobStatus, reason: str) -> None:
    """Ask the job's worker to stop it; the worker reports `status` when it has."""
    emit("cancel_work", {"job": job["job"], "attempt": job["attempt"], "status": JobStatus(status).value,
                         "reason": reason}, to=f"worker:{job['worker']}", spool=state.node_dir.spool)
