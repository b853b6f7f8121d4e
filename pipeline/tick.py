"""Hub: time passes (`trivialci hub --tick SECONDS`). Notice lost workers, dispatch, boot."""

import os

from trivialci.hub import HubState, boot_workers, dispatch, requeue_lost

state = HubState.open(os.environ["TRIVIALCI_SPOOL"])
for job in requeue_lost(state):
    print(f"{job}: its worker was lost; queued again")
dispatch(state)
for kind in boot_workers(state):
    print(f"asked for a {kind} worker")
