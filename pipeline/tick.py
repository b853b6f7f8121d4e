"""Hub: time passes (`trivialci hub --tick SECONDS`). Record hand edits of state/, notice lost workers, dispatch,
boot; once a day, prune."""

import os

import trivialci
from trivialci.hub import HubState, boot_workers, dispatch, notice_hand_edits, prune_due, refuse_off_hub, requeue_lost

refuse_off_hub("tick")  # a hub's event dropped into a worker's inbox changes nothing there

state = HubState.open(os.environ["TRIVIALCI_SPOOL"])
for line in notice_hand_edits(state):
    print(line)
for job in requeue_lost(state):
    print(f"{job}: its worker was lost; queued again")
dispatch(state)
for kind in boot_workers(state):
    print(f"asked for a {kind} worker")
if prune_due(state):
    print(f"a new day: asked for a prune ({trivialci.emit('prune', {})})")
