"""Stages: `.trivialci/NN-KIND` runs in stage NN, once every job of the stages before it PASSED.

The order is the files' names, as `ls .trivialci/` shows them; there is no pipeline language:

    .trivialci/KIND        stage 0 (the first), on a worker of kind KIND
    .trivialci/NN-KIND     stage NN (1-4 digits, as a number: 10-test and 010-test are both stage 10)

A kind appears once in a push (it names $TRIVIALCI_UPSTREAM/KIND/ for the later stages): two files naming one
kind refuse the push, with the reason (plan_stages).

A push is planned whole when it comes (queue_push): one job per kind, each with
    "push"      the push's id: the id of its first job
    "stage"     its stage number
    "upstream"  [{"job", "kind"}] every job of the stages before its own: whose artifacts it takes
    "plan"      [{"job", "kind", "stage"}] every job of the push, as planned
The first stage's jobs are QUEUED (HELD, for an untrusted push), the later ones WAITING. When a job of
the push ends, advance() looks at the WAITING jobs that take its artifacts: one whose upstream jobs all
PASSED is QUEUED (HELD if untrusted: each job waits for its own approval); one with an upstream job that
ended otherwise is SKIPPED, "skipped: KIND STATUS", its record written to the store. Every change is a
work_status event recorded by the script that decided it (eventlog.record), so a rebuild replays it.

`trivialci rebuild JOB` (rebuild()) queues a final job again as a new job ("rebuild_of": JOB) with its
push, stage and upstream; with downstream, the later stages of its push are planned again after it,
taking its artifacts instead of the old job's.
"""

from ..errors import BadInput
from ..jobs import MAX_UPSTREAM, JobStatus, new_job_id, stage_of
from .approval import hold_job
from .scheduling import end_queued, queue_job, record_status
from .state import HubState

CARRIED = ("repo", "branch", "sha", "params", "trusted", "forge", "forge_repo", "author", "subject", "pr", "head_repo",
           "push", "stage", "upstream", "plan")  # not "approval": an approval is for one job


def plan_stages(names: list[str]) -> list[tuple[int, str]]:
    """(stage, kind) for the executable names of .trivialci/, in order; names that are no kind are left out.
    BadInput when a kind is named twice, or a stage number is too long."""
    plan, seen = [], {}
    for name in names:
        stage, kind = stage_of(name)
        if kind is None:
            continue
        if kind in seen:
            raise BadInput(f".trivialci/{seen[kind]} and .trivialci/{name} both name kind {kind}: a kind runs once "
                           "in a push (its artifacts are $TRIVIALCI_UPSTREAM/KIND/); rename one")
        seen[kind] = name
        plan.append((stage, kind))
    if len(plan) > MAX_UPSTREAM + 1:
        raise BadInput(f".trivialci/ names {len(plan)} kinds: at most {MAX_UPSTREAM + 1} in a push")
    return sorted(plan)


def queue_push(state: HubState, plan: list[tuple[int, str]], package: dict, hold=None) -> list[dict]:
    """The jobs of a push: the first stage's queued (or held by `hold`, a function like queue_job), the later
    ones WAITING; `package` is a job without job, kind and stage. The jobs, in the order of the plan."""
    ids = _job_ids(len(plan))
    planned = [{"job": job_id, "kind": kind, "stage": stage} for job_id, (stage, kind) in zip(ids, plan)]
    jobs = []
    for entry in planned:
        upstream = [{"job": e["job"], "kind": e["kind"]} for e in planned if e["stage"] < entry["stage"]]
        job = {**package, **entry, "push": ids[0], "upstream": upstream, "plan": planned}
        jobs.append(_file(state, job, first=entry["stage"] == planned[0]["stage"], hold=hold))
    return jobs


def _job_ids(count: int) -> list[str]:
    ids: list[str] = []
    while len(ids) < count:
        job_id = new_job_id()
        if job_id not in ids:
            ids.append(job_id)
    return ids


def _file(state: HubState, job: dict, first: bool, hold=None) -> dict:
    if not first:
        return record_status(state, {**job, "status": JobStatus.WAITING})
    return (hold or queue_job)(state, job)


def advance(state: HubState, job: dict) -> list[str]:
    """After a job of a push ended: queue the WAITING jobs whose upstream all PASSED, skip those with one that
    did not; a line for each job changed."""
    if not job or not job.get("push") or not JobStatus(job["status"]).final:
        return []
    lines = []
    for waiting in _waiting_for(state, job):
        lines.append(_hand_off(state, waiting))
    return [line for line in lines if line]


def _waiting_for(state: HubState, ended: dict) -> list[dict]:
    """The WAITING jobs of the push of `ended` that take its artifacts (still on its branch's list)."""
    found = []
    for job_id in state.branch_jobs(ended["repo"], ended["branch"]):
        job = state.job(job_id)
        if job and job["status"] == JobStatus.WAITING and job.get("push") == ended["push"] \
                and any(item["job"] == ended["job"] for item in job.get("upstream") or []):
            found.append(job)
    return found


def _hand_off(state: HubState, waiting: dict) -> str | None:
    upstream = [(item, state.job(item["job"])) for item in waiting["upstream"]]
    for item, job in upstream:
        if job is None:
            return _skip(state, waiting, f"skipped: {item['kind']} ({item['job']}) is not in the hub's state")
        if JobStatus(job["status"]).final and job["status"] != JobStatus.PASSED:
            return _skip(state, waiting, f"skipped: {item['kind']} {job['status']}")
    if all(job["status"] == JobStatus.PASSED for _, job in upstream):
        filed = _file(state, {"job": waiting["job"], "attempt": waiting["attempt"]}, first=True,
                      hold=_holder(waiting))
        return f"{waiting['job']}: {filed['status']} ({waiting['kind']}, stage {waiting['stage']})"
    return None


def _skip(state: HubState, job: dict, reason: str) -> str:
    end_queued(state, job, JobStatus.SKIPPED, reason)
    return f"{job['job']}: SKIPPED ({job['kind']}, stage {job['stage']}): {reason}"


def _holder(job: dict):
    """hold_job for a job that is not trusted ("trusted": false): it waits for its own approval."""
    return None if "trusted" not in job or job["trusted"] is True else hold_job


def rebuild(state: HubState, job_id: str, downstream: bool = False) -> list[dict]:
    """Queue a final job again as a new job; with `downstream`, the later stages of its push after it.
    BadInput (nothing changes) for a job the hub does not know or that is not over."""
    job = rebuildable(state, job_id)
    again = _again(job)
    jobs = [_file(state, again, first=True, hold=_holder(again))]
    return jobs + (_downstream(state, job, again) if downstream else [])


def rebuildable(state: HubState, job_id: str) -> dict:
    """The job, if it can run again: one the hub knows, that is over and was not skipped; BadInput saying why
    not otherwise (`trivialci rebuild` asks this first, to answer at once)."""
    job = state.job(job_id)
    if job is None:
        raise BadInput(f"no job {job_id} in the hub's state: see `trivialci jobs` (a job pruned from it cannot be "
                       "rebuilt; push again)")
    status = JobStatus(job["status"])
    if not status.final:
        raise BadInput(f"{job_id} is {status.value}: only a job that is over can be rebuilt (cancel it first)")
    if status is JobStatus.SKIPPED:
        raise BadInput(f"{job_id} was SKIPPED ({job.get('reason')}): rebuild the job it waited for, with "
                       "--downstream")
    return job


def _again(job: dict, **changes) -> dict:
    """A new job of the same repository, sha, kind and parameters, naming the one it repeats."""
    kept = {key: job[key] for key in CARRIED if key in job}
    return {**kept, "job": new_job_id(), "kind": job["kind"], "attempt": 1, "rebuild_of": job["job"], **changes}


def _downstream(state: HubState, job: dict, again: dict) -> list[dict]:
    """The later stages of the push of `job`, as new jobs WAITING for `again` (and what `job` took artifacts
    from, and the other jobs of its stage as the push had them)."""
    plan = job.get("plan") or []
    taken = {item["kind"]: item for item in job.get("upstream") or []}
    taken.update({e["kind"]: {"job": e["job"], "kind": e["kind"]} for e in plan
                  if e["stage"] == job.get("stage") and e["kind"] != job["kind"]})
    taken[job["kind"]] = {"job": again["job"], "kind": job["kind"]}
    jobs = []
    for stage in sorted({e["stage"] for e in plan if e["stage"] > job.get("stage", 0)}):
        made = [_again({**job, "job": e["job"], "kind": e["kind"], "stage": stage}, upstream=list(taken.values()))
                for e in plan if e["stage"] == stage]
        jobs += [record_status(state, {**new, "status": JobStatus.WAITING}) for new in made]
        taken.update({new["kind"]: {"job": new["job"], "kind": new["kind"]} for new in made})
    return jobs
