"""`trivialci jobs`: the queue, what runs where, and the last results, from the hub's state/.

Finished jobs that a prune dropped from state/ are still in the artifact store:
given one, the recent results are filled up from it.
"""

from .state import HubState
from ..spool.terminal import printable
from ..jobs import RUNNING, JobStatus
from ..store.history import list_jobs


def jobs_summary(state: HubState, recent: int = 15, store=None) -> dict:
    queued = {kind: [state.job(j) for j in state.queued(kind)] for kind in state.queued_kinds()}
    running = [state.job(w["job"]) for w in state.workers() if w["state"] == "busy" and w.get("job")]
    return {
        "held": [j for j in (state.job(job_id) for job_id in state.held()) if j],
        "queued": {kind: [j for j in jobs if j] for kind, jobs in queued.items() if jobs},
        "running": [j for j in running if j and JobStatus(j["status"]) in RUNNING],
        "recent": _recent(state, recent, store),
        "workers": state.workers(),
        "paused": state.paused(),
    }


def _recent(state: HubState, recent: int, store) -> list[dict]:
    found = [j for j in state.recent_jobs(recent) if JobStatus(j["status"]).final or j["status"] == JobStatus.LOST]
    if store is None or len(found) >= recent:
        return found
    known = {j["job"] for j in state.recent_jobs(recent)}
    older = [j for j in list_jobs(store, recent + len(known)) if j["job"] not in known and _is_final(j)]
    return found + older[:recent - len(found)]


def _is_final(record: dict) -> bool:
    if not all(isinstance(record.get(name), str) for name in ("job", "kind", "branch", "sha")):
        return False  # a record the table could not show
    try:
        return JobStatus(record.get("status")).final
    except ValueError:
        return False


def format_jobs(summary: dict) -> str:
    """The summary as text; every value from state/ is shown through `printable` (it is input like any other)."""
    lines = ["held (trivialci approve JOB builds one):"] if summary.get("held") else []
    lines += [f"  {_cell(j['job'])}  {_cell(j['kind'], 12)} {_short(j)}  {_cell(_origin(j))}"
              for j in summary.get("held", [])]
    lines += ["queued:" + ("  (dispatch paused: state/PAUSE exists)" if summary["paused"] else "")]
    for kind, jobs in summary["queued"].items():
        lines += [f"  {_cell(j['job'])}  {_cell(kind, 12)} {_short(j)}  attempt {_cell(j.get('attempt', 1))}"
                  for j in jobs]
    lines += ["running:"] + [f"  {_cell(j['job'])}  {_cell(j['kind'], 12)} {_short(j)}  {_cell(j['status'], 9)} "
                             f"on {_cell(j.get('worker'))}" for j in summary["running"]]
    lines += ["recent:"] + [f"  {_cell(j['job'])}  {_cell(j['kind'], 12)} {_short(j)}  {_cell(j['status'], 10)} "
                            f"{_seconds(j)}{_why(j)}" for j in summary["recent"]]
    lines += ["workers:"] + [f"  {_cell(w['name'], 16)} {_cell(w['kind'], 12)} {_cell(w['state'], 5)} "
                             f"{_cell(w.get('job') or '')}" for w in summary["workers"]]
    return "\n".join(lines)


def _cell(value, width: int = 0) -> str:
    return f"{printable(value):<{width}}"


def _origin(job: dict) -> str:
    """Where a held job's code comes from: the pull request and its author, as the forge named them."""
    pr = f"#{job['pr']}" if job.get("pr") else ""
    return " ".join(str(part) for part in (pr, job.get("head_repo"), job.get("author") and f"by {job['author']}")
                    if part)


def _short(job: dict) -> str:
    return f"{printable(job['branch'])[:30]:<30} {printable(job['sha'])[:12]}"


def _why(job: dict) -> str:
    """The reason of a job the store refused: what was not kept, and why (its verdict comes first)."""
    if job.get("status") != JobStatus.UNSTORED:
        return ""
    return f"  ({job.get('verdict')}, not stored) {job.get('reason') or ''}"


def _seconds(job: dict) -> str:
    run_time = job.get("run_time")
    return f"{run_time:.1f}s" if isinstance(run_time, (int, float)) else printable(run_time or "")
