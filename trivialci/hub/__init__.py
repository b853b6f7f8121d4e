"""The hub: its derived state, the queue, dispatch, booting and losing workers.

The hub's state is plain files under SPOOL/state/ (state.py), derived from the
events in its done/ and rebuilt from them when deleted. Its pipeline scripts
change it through the functions exported here, which docs/scripting.md
documents: they are the API a user's hub scripts may rely on.

It may import the forge layer, the git layer, the stores, the spool layer,
trivialci.jobs and trivialci.errors; never the worker, the web or the CLI.
"""

from .approval import approve_job, hold_job
from .boot import boot as boot_worker
from .fields import check_branch_update, check_rebuild, check_work_done, check_work_required, check_work_status
from .forgestatus import report_change
from .handedits import notice_hand_edits
from .pipelinesource import refresh_if_source as refresh_pipeline_if_source
from .retention import RetentionPolicy, prune, prune_due
from .role import refuse_off_hub
from .scheduling import (LOST_AFTER, TRUST_FIELDS, boot_workers, cancel_running, dispatch, end_job, end_queued,
                         queue_job, requeue_lost, worker_ready)
from .stages import advance as advance_stages
from .stages import plan_stages, queue_push
from .stages import rebuild as rebuild_job
from .state import HubState

__all__ = ["HubState", "LOST_AFTER", "RetentionPolicy", "TRUST_FIELDS", "advance_stages", "approve_job", "boot_worker",
           "boot_workers", "cancel_running", "check_branch_update", "check_rebuild", "check_work_done",
           "check_work_required", "check_work_status", "dispatch", "end_job", "end_queued", "hold_job",
           "notice_hand_edits", "plan_stages", "prune", "prune_due", "queue_job", "queue_push", "rebuild_job",
           "refresh_pipeline_if_source", "refuse_off_hub", "report_change", "requeue_lost", "worker_ready"]
