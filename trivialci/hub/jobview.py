"""`trivialci jobs`: the queue, what runs where, and the last results, from the hub's state/.

Finished jobs that a prune dropped from state/ are still in the artifact store:
given one, the recent results are filled up from it. A push in stages
(.trivialci/NN-KIND) is shown as one unit too: its stages in order, each job's
state, from the plan its jobs carry (hub/stages.py).
"""

from .state import HubState
from ..spool.terminal import printable
from ..jobs import RUNNING, JobStatus
from ..store.history import list_jobs


def jobs_summary(state: HubState, recent: int = 15, store=None) -> dict:
    queued = {kind: [state.job(j) for j in state.queued(kind)] for kind in state.queued_kinds()}
    running = [state.job(w["job"]) for w in state.workers() if w["state"] == "busy" and w.get("job")]
    summary = {
        "held": [j for j in (state.job(job_id) for job_id in state.held()) if j],
        "queued": {kind: [j for j in jobs if j] for kind, jobs in queued.items() if jobs},
        "running": [j for j in running if j and JobStatus(j["status"]) in RUNNING],
        "recent": _recent(state, recent, store),
        "workers": state.workers(),
        "paused": state.paused(),
    }
    shown = [*summary["held"], *sum(summary["queued"].values(), []), *summary["running"], *summary["recent"]]
    return {**summary, "pushes": pushes_of(state, shown)}


def pushes_of(state: HubState, jobs: list[dict]) -> list[dict]:
    """The pushes of more than one stage among `jobs`, newest first: {push, repo, branch, sha, stages: [{stage, jobs}]}, each job
    {job, kind, status, reason, rebuild_of} as the hub knows it now (a planned job it no longer has: status None)."""
    found: dict[str, list[dict]] = {}
    for job in jobs:
        if isinstance(job.get("push"), str) and _stages_of(job.get("plan")) > 1:
            found.setdefault(job["push"], [])
            found[job["push"]] += [job]
    return [_push(state, members) for _, members in sorted(found.items(), reverse=True)]


def _stages_of(plan) -> int:
    """How many stages a job's plan has (0 for anything that is no plan)."""
    return len({e.get("stage") for e in plan if isinstance(e, dict)}) if isinstance(plan, list) else 0


def _push(state: HubState, members: list[dict]) -> dict:
    first = members[0]
    planned = [state.job(e.get("job")) or {**e, "status": None} for e in first["plan"] if isinstance(e, dict)]
    known = {j["job"] for j in planned}
    jobs = planned + [j for j in members if j["job"] not in known]
    stages = sorted({j.get("stage", 0) for j in jobs if isinstance(j.get("stage", 0), int)})
    return {"push": first["push"], "repo": first.get("repo"), "branch": first.get("branch"), "sha": first.get("sha"),
            "stages": [{"stage": stage, "jobs": [_brief(j) for j in jobs if j.get("stage", 0) == stage]}
                       for stage in stages]}


def _brief(job: dict) -> dict:
    return {key: job.get(key) for key in ("job", "kind", "status", "reason", "rebuild_of")}


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
    lines += _push_lines(summary.get("pushes", []))
    lines += ["workers:"] + [f"  {_cell(w['name'], 16)} {_cell(w['kind'], 12)} {_cell(w['state'], 5)} "
                             f"{_cell(w.get('job') or '')}" for w in summary["workers"]]
    return "\n".join(lines)


def _push_lines(pushes: list[dict]) -> list[str]:
    """Each push in stages: its first job's id, branch and sha, then one line per stage, its jobs in order."""
    lines = ["pushes (in stages):"] if pushes else []
    for push in pushes:
        lines.append(f"  {_cell(push['push'])}  {printable(push['branch'] or '')[:30]} "
                     f"{printable(push['sha'] or '')[:12]}")
        lines += [f"    stage {_cell(stage['stage'], 5)} " + ", ".join(_job_word(j) for j in stage["jobs"])
                  for stage in push["stages"]]
    return lines


def _job_word(job: dict) -> str:
    """kind STATUS, with the reason of a skipped job and the job a rebuild repeats."""
    word = f"{printable(job.get('kind'))} {printable(job.get('status') or 'gone')}"
    if job.get("status") == JobStatus.SKIPPED:
        word += f" ({printable(job.get('reason') or '')})"
    return word + (f" (rebuild of {printable(job['rebuild_of'])})" if job.get("rebuild_of") else "")


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
