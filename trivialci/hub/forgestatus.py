"""Commit statuses from job changes: a commit_status event to the hub for each change a forge should show.

The hub's work_status script calls report_change once it folded a change
into state/ (every change of a job passes there as a work_status event). It
emits commit_status only

- for a job that came from a forge: its "forge" and "forge_repo" (from the
  webhook's event, or the forge its repository was last heard from);
- when the hub posts statuses to that forge: TRIVIALCI_FORGES, which
  `trivialci hub` sets to the forges it has a token for (their names only);
- when the change is still the job's state (one that a later change
  overtook before it was handled is not worth a request).

The event carries the job's words; pipeline/commit_status.py decides what the
forge is told, and queues it for the hub's sender (trivialci.forge).
"""

import os

from ..spool.delivery import emit
from .state import HubState

FORGES_ENV = "TRIVIALCI_FORGES"
CHANGE_FIELDS = ("job", "forge", "forge_repo", "repo", "branch", "sha", "kind", "status", "attempt", "reason",
                 "run_time", "pr")


def report_change(state: HubState, job: dict, update: dict, env=os.environ):
    """Emit commit_status for `job` after `update` was applied; the event's path, or None when none is due."""
    forges = {name for name in env.get(FORGES_ENV, "").split(",") if name}
    if not job or job.get("forge") not in forges:
        return None
    if job.get("status") != update.get("status") or job.get("attempt") != update.get("attempt", job.get("attempt")):
        return None
    return emit("commit_status", {field: job.get(field) for field in CHANGE_FIELDS}, to="hub",
                spool=state.node_dir.spool)
