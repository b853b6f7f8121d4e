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

from .delivery import emit
from .hubstate import HubState, heartbeat_age
from .jobs import RUNNING, JobStatus, iso_now

LOST_AFTER = float(os.environ.get("TRIVIALCI_LOST_AFTER", 30.0))  # the hub's environment may shorten it

BOOT_PATIENCE = 2 * LOST_AFTER  # a booted worker has this long to show its heartbeat
BUILD_TIMEOUT = 3600.0


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


def dispatch(state: HubState) -> list[tuple[str, str]]:
    """Hand the oldest queued job of each kind to an idle worker of that kind."""
    handed = []
    if state.paused():
        return handed
    for worker in state.workers():
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
                          "attempt": job["attempt"], "dispatched": iso_now()})
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
            record_status(state, {"job": job["job"], "status": JobStatus.LOST, "attempt": job["attempt"],
                                  "reason": f"worker {worker['name']} stopped answering"})
            record_status(state, {"job": job["job"], "status": JobStatus.QUEUED, "attempt": job["attempt"] + 1,
                                  "worker": None})
            requeued.append(job["job"])
    return requeued


def cancel_running(state: HubState, job: dict, status: JobStatus, reason: str) -> None:
    """Ask the job's worker to stop it; the worker reports `status` when it has."""
    emit("cancel_work", {"job": job["job"], "attempt": job["attempt"], "status": JobStatus(status).value,
                         "reason": reason}, to=f"worker:{job['worker']}", spool=state.node_dir.spool)
