"""The hub: its derived state, the queue, dispatch, booting and losing workers.

The hub's state is plain files under SPOOL/state/ (state.py), derived from the
events in its done/ and rebuilt from them when deleted. Its pipeline scripts
change it through the functions exported here, which docs/scripting.md
documents: they are the API a user's hub scripts may rely on.

It may import the git layer, the stores, the spool layer, trivialci.jobs and
trivialci.errors; never the worker, the web or the CLI.
"""

from .boot import boot as boot_worker
from .handedits import notice_hand_edits
from .pipelinesource import refresh_if_source as refresh_pipeline_if_source
from .retention import RetentionPolicy, prune, prune_due
from .scheduling import (LOST_AFTER, boot_workers, cancel_running, dispatch, end_queued, queue_job, requeue_lost,
                         worker_ready)
from .state import HubState

__all__ = ["HubState", "LOST_AFTER", "RetentionPolicy", "boot_worker", "boot_workers", "cancel_running", "dispatch",
           "end_queued", "notice_hand_edits", "prune", "prune_due", "queue_job", "refresh_pipeline_if_source",
           "requeue_lost", "worker_ready"]
