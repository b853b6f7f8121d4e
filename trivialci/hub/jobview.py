"""`trivialci jobs`: the queue, what runs where, and the last results, from the hub's state/."""

from .state import HubState
from ..jobs import RUNNING, JobStatus


def jobs_summary(state: HubState, recent: int = 15) -> dict:
    queued = {kind: [state.job(j) for j in state.queued(kind)] for kind in state.queued_kinds()}
    running = [state.job(w["job"]) for w in state.workers() if w["state"] == "busy" and w.get("job")]
    return {
        "held": [j for j in (state.job(job_id) for job_id in state.held()) if j],
        "queued": {kind: [j for j in jobs if j] for kind, jobs in queued.items() if jobs},
        "running": [j for j in running if j and JobStatus(j["status"]) in RUNNING],
        "recent": [j for j in state.recent_jobs(recent) if JobStatus(j["status"]).final
                   or j["status"] == JobStatus.LOST],
        "workers": state.workers(),
        "paused": state.paused(),
    }


def format_jobs(summary: dict) -> str:
    lines = ["held (trivialci approve JOB builds one):"] if summary.get("held") else []
    lines += [f"  {j['job']}  {j['kind']:<12} {_short(j)}  {_origin(j)}" for j in summary.get("held", [])]
    lines += ["queued:" + ("  (dispatch paused: state/PAUSE exists)" if summary["paused"] else "")]
    for kind, jobs in summary["queued"].items():
        lines += [f"  {j['job']}  {kind:<12} {_short(j)}  attempt {j.get('attempt', 1)}" for j in jobs]
    lines += ["running:"] + [f"  {j['job']}  {j['kind']:<12} {_short(j)}  {j['status']:<9} on {j.get('worker')}"
                             for j in summary["running"]]
    lines += ["recent:"] + [f"  {j['job']}  {j['kind']:<12} {_short(j)}  {j['status']:<10} {_seconds(j)}"
                            for j in summary["recent"]]
    lines += ["workers:"] + [f"  {w['name']:<16} {w['kind']:<12} {w['state']:<5} {w.get('job') or ''}"
                             for w in summary["workers"]]
    return "\n".join(line for line in lines)


def _origin(job: dict) -> str:
    """Where a held job's code comes from: the pull request and its author, as the forge named them."""
    pr = f"#{job['pr']}" if job.get("pr") else ""
    return " ".join(str(part) for part in (pr, job.get("head_repo"), job.get("author") and f"by {job['author']}")
                    if part)


def _short(job: dict) -> str:
    return f"{job['branch'][:30]:<30} {job['sha'][:12]}"


def _seconds(job: dict) -> str:
    return f"{job['run_time']:.1f}s" if job.get("run_time") is not None else ""
