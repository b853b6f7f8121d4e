"""Prune: what the retention policy removes from a spool (the hub's and every worker's records) and the store.

A prune runs these steps in this order; each ends at a crash point (spool/faults.py)
so that tests can kill it there, and a prune run again finishes what one killed
left half done:
  1. plan       read the spool's day folders and the store's listing and records;
                nothing changes (`--dry-run` stops here and prints the plan)
  2. checkpoint fold the hub's done/ days that go into SPOOL/checkpoint.json, then
                drop from state/ what the new checkpoint dropped   (prune-checkpointed)
  3. spool      remove the expired day folders and housekeeping records, answered build
                requests (hub/requests.py), boot logs and the directories of workers
                gone for good (spool/workerretention.py)             (prune-days-removed)
  4. store      every removed job's job.json in one batch            (prune-records-deleted)
                then each job's log and files                        (prune-job-removed)
The policy is spool/retention.py's for records and jobretention.py's for jobs.
"""

import datetime
import shutil
import time
from dataclasses import dataclass, field

from . import checkpoint, requests
from .jobretention import StoredJob, jobs_to_remove, remove_jobs, stored_jobs
from .state import HubState, _branch_key
from ..errors import SpoolUnavailable
from ..jobs import FINAL
from ..spool import retention as records, workerretention
from ..spool.faults import crash_point
from ..spool.layout import hub_dir
from ..store import ArtifactStore, open_store

PRUNE_DAY = "prune.json"  # {"day": DAY}: the day tick.py last asked for a prune
FOLD = ".prune-fold"  # a scratch fold inside state/ (same filesystem, hidden from its readers)


@dataclass(frozen=True)
class RetentionPolicy:
    """How long things stay; the shipped pipeline/prune.py sets these from the constants at its top."""

    keep_days: int = 30
    keep_last: int = 20
    keep_failed_days: int = 90
    housekeeping_days: int = 1
    housekeeping: tuple[str, ...] = ("tick", "prune")
    worker_log_bytes: int = 10 << 20  # a worker's boot log (SPOOL/workers/NAME.log) is cut beyond this

    def for_records(self) -> records.SpoolPolicy:
        return records.SpoolPolicy(self.keep_days, max(self.keep_failed_days, self.keep_days),
                                   self.housekeeping_days, tuple(self.housekeeping))


@dataclass
class PrunePlan:
    """What a prune removes; `lines()` says it, with the bytes, as --dry-run prints it."""

    removals: list[records.Removal] = field(default_factory=list)
    leftovers: list[records.Leftover] = field(default_factory=list)
    jobs: list[StoredJob] = field(default_factory=list)
    through: str = ""  # the hub's done/ days up to this one are folded into the checkpoint
    store: str | None = None

    @property
    def bytes(self) -> int:
        return sum(r.bytes for r in self.removals) + sum(left.freed for left in self.leftovers) + \
            sum(job.bytes for job in self.jobs)

    def lines(self, done: bool) -> list[str]:
        verb = "removed" if done else "would remove"
        lines = [f"{verb} {removal.describe()}" for removal in self.removals]
        lines += [leftover.line(done) for leftover in self.leftovers]
        lines += [f"{verb} {job.describe()}" for job in self.jobs]
        days = sum(1 for r in self.removals if r.whole_day)
        housekeeping = sum(r.count for r in self.removals if not r.whole_day)
        store = "" if self.store else " (no --store given: no job was looked at)"
        lines.append(f"{'freed' if done else 'would free'} {self.bytes} bytes ({_mib(self.bytes)}): "
                     f"{len(self.jobs)} jobs, {days} day folders, {housekeeping} housekeeping files, "
                     f"{len(self.leftovers)} other entries{store}")
        return lines


def prune(spool, store: ArtifactStore | str | None, policy: RetentionPolicy, dry_run: bool = False,
          now: float | None = None) -> PrunePlan:
    """Plan, and unless `dry_run` carry out, one prune of `spool` and `store` (a URL or an open store)."""
    now = time.time() if now is None else now
    store = open_store(store) if isinstance(store, str) else store
    try:
        plan = plan_prune(spool, store, policy, now)
        if not dry_run:
            carry_out(spool, store, plan)
    except OSError as error:
        raise SpoolUnavailable(f"prune stopped: cannot {'read' if dry_run else 'change'} {error.filename or spool}: "
                               f"{error.strerror or error}; nothing half-removed is visible, and the next prune "
                               "finishes the work") from None
    return plan


def plan_prune(spool, store: ArtifactStore | None, policy: RetentionPolicy, now: float) -> PrunePlan:
    today = datetime.datetime.fromtimestamp(now, datetime.timezone.utc).date()
    expired = records.expired_days(hub_dir(spool).done, policy.keep_days, today)
    through = max(expired[-1] if expired else "", checkpoint.read(hub_dir(spool)).get("through", ""))
    plan = PrunePlan(records.plan(spool, policy.for_records(), today, through), through=through,
                     store=store.url if store else None)
    plan.leftovers = _leftovers(spool, policy, now, plan.removals)
    if store is not None:
        stored = stored_jobs(store)
        gone = jobs_to_remove(stored, policy.keep_days, policy.keep_last, now, _active_jobs(spool))
        plan.jobs = [stored[job] for job in gone]
    return plan


def carry_out(spool, store: ArtifactStore | None, plan: PrunePlan) -> None:
    if plan.through > checkpoint.read(hub_dir(spool))["through"]:
        fold_into_checkpoint(spool, plan.through)
    crash_point("prune-checkpointed")
    for removal in plan.removals:
        records.remove(removal)
    for leftover in plan.leftovers:
        _remove_leftover(spool, leftover)
    crash_point("prune-days-removed")
    if store is not None and plan.jobs:
        remove_jobs(store, plan.jobs, crash_point)


def _leftovers(spool, policy: RetentionPolicy, now: float, removals: list) -> list[records.Leftover]:
    """Answered build requests, and what workers gone for good left in SPOOL/workers/."""
    expiring = {removal.day for removal in removals if removal.whole_day}
    return requests.expired_requests(HubState.open(spool), policy.keep_days, now) + \
        workerretention.plan(spool, policy.keep_days, policy.worker_log_bytes, now, expiring)


def _remove_leftover(spool, leftover: records.Leftover) -> None:
    if leftover.root is not None:
        requests.remove_request(leftover)
    elif leftover.keep_tail:
        workerretention.cut_log(leftover.path, leftover.keep_tail, spool)
    elif leftover.shown.endswith("/"):
        workerretention.remove_worker_directory(leftover.path)
    else:
        leftover.path.unlink(missing_ok=True)


def fold_into_checkpoint(spool, through: str) -> None:
    """Fold the hub's done/ days up to `through` into the checkpoint; drop from state/ what it dropped."""
    state = HubState.open(spool)
    files = _fold(spool, through)
    mentioned, touched = _mentioned_after(state, through, files)
    gone = checkpoint.dropped(files, mentioned, touched)
    checkpoint.write(state.node_dir, through, {path: files[path] for path in files if path not in gone})
    for path in gone:
        _drop_from_state(state, path)


def _fold(spool, through: str) -> dict:
    """The checkpoint's files with the days after it, up to `through`, applied (in a scratch state)."""
    fold = HubState(spool)
    fold.root = fold.root / FOLD
    shutil.rmtree(fold.root, ignore_errors=True)
    fold.root.mkdir(parents=True)
    try:
        fold.replay(after=checkpoint.restore(fold), through=through, in_flight=True)  # with the changes recorded
        # by then that are handled later: a replay after the checkpoint leaves them out
        return checkpoint.snapshot(fold.root)
    finally:
        shutil.rmtree(fold.root, ignore_errors=True)


def _mentioned_after(state: HubState, through: str, files: dict) -> tuple[set, set]:
    """The jobs that events after `through` mention, and the keys of their branches."""
    jobs, branches = set(), set()
    for _, payload in state._handled_events(after=through):
        job = payload.get("job")
        if not isinstance(job, str):
            continue
        jobs.add(job)
        known = files.get(f"jobs/{job}.json") or payload
        if isinstance(known.get("repo"), str) and isinstance(known.get("branch"), str):
            branches.add(_branch_key(known["repo"], known["branch"]))
    return jobs, branches


def _drop_from_state(state: HubState, path: str) -> None:
    """Remove one file compaction dropped, unless an event made it matter again meanwhile."""
    record = state._read(path)
    if record is None:
        return
    if (path.startswith("jobs/") and record.get("status") in FINAL) or \
            (path.startswith("branches/") and record.get("jobs") == []):
        (state.root / path).unlink(missing_ok=True)


def _active_jobs(spool) -> set[str]:
    """The jobs the hub's state holds as not final (queued, running, LOST): never removed."""
    state = HubState.open(spool)
    names = sorted(path.stem for path in (state.root / "jobs").glob("*.json"))
    return {name for name in names if (state.job(name) or {}).get("status") not in FINAL}


def _mib(size: int) -> str:
    return f"{size / (1 << 20):.1f} MiB"


def prune_due(state: HubState, now: float | None = None) -> bool:
    """True once per UTC day (the first call of the day notes the day in state/prune.json): tick.py asks it."""
    now = time.time() if now is None else now
    today = datetime.datetime.fromtimestamp(now, datetime.timezone.utc).date().isoformat()
    if (state._read(PRUNE_DAY) or {}).get("day") == today:
        return False
    state._write(PRUNE_DAY, {"day": today})
    return True
