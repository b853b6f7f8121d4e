"""Which node runs a hub's script: the hub, never a worker.

Every node runs the same pipeline, so an event of the hub's dropped into a
worker's inbox would run a hub script there: it would rebuild and change
SPOOL/state/ beside the hub's own scripts, boot workers, or prune, from a
node that is not the one whose event log state/ is derived from. The hub's
scripts refuse to run off the hub (`refuse_off_hub`), and HubState.open
refuses to write state/ from a worker's script.
"""

import os
import sys

from ..errors import BadInput
from ..spool.layout import HUB

NODE_ENV = "TRIVIALCI_NODE"  # set by the node for each script it runs; absent for a person's command


def running_node() -> str:
    """The node this script runs for: the hub for a command a person runs."""
    return os.environ.get(NODE_ENV) or HUB


def refuse_off_hub(event_type: str) -> None:
    """Exit with one line, before anything is read or written, when this hub script runs on a worker."""
    node = running_node()
    if node != HUB:
        sys.exit(f"refused: {event_type} is the hub's event, and {node} is a worker: only the hub runs it "
                 "(the hub's events go into SPOOL/inbox/)")


def check_on_hub(what: str) -> None:
    """BadInput when `what`, the hub's to do, is asked of a worker's script."""
    node = running_node()
    if node != HUB:
        raise BadInput(f"{what} is the hub's to do, and this script runs on worker {node}")
