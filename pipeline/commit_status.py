"""Hub: a job a forge knows of changed. Tell the forge: a commit status, posted by the hub's sender.

The hub emits commit_status for each change of a job that came from a forge
it has a token for (trivialci.hub.report_change). What the forge is told is
decided here: change the context, the description or the link below. This
never waits on the forge: queue_status writes state/statuses/KEY.json, which
the hub's sender posts (retrying with backoff while the forge is down), and
of two reports for one commit and context, the newer one wins.
"""

import json
import os
import sys

from trivialci import TrivialCiError
from trivialci.forge import describe, order_of, queue_status
from trivialci.hub import refuse_off_hub

refuse_off_hub("commit_status")  # a hub's event dropped into a worker's inbox changes nothing there

CONTEXT = "trivialci/{kind}"  # one status per kind of job


def main(change: dict) -> None:
    state, description = describe(change)
    public = os.environ.get("TRIVIALCI_PUBLIC_URL")  # --public-url, or the web UI's address
    report = {"forge": change.get("forge"), "forge_repo": change.get("forge_repo"), "sha": change.get("sha"),
              "context": CONTEXT.format(kind=change.get("kind")), "state": state, "description": description,
              "target_url": f"{public.rstrip('/')}/jobs/{change.get('job')}" if public else None,
              "order": order_of(change), "job": change.get("job")}
    print(queue_status(os.environ["TRIVIALCI_SPOOL"], report))


if __name__ == "__main__":
    try:
        main(json.load(sys.stdin))
    except TrivialCiError as refusal:
        sys.exit(f"refused: {refusal}")
