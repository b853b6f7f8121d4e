"""Hub: time passes (`trivialci hub --tick SECONDS`). Notice lost workers, dispatch, boot."""

import os

from trivialci import scheduling
from trivialci.hubstate import HubState

state = HubState.open(os.environ["TRIVIALCI_SPOOL"])
for job in scheduling.requeue_lost(state):
    print(f"{job}: its worker was lost; queued again")
scheduling.dispatch(state)
for kind in scheduling.boot_workers(state):
    print(f"asked for a {kind} worker")
