"""Crash points: tests kill a node with a real SIGKILL at a named step.

TRIVIALCI_TEST_CRASH_AT=claimed|started|exited|decided|moved makes the node
kill itself right after that step (outbox-staged|outbox-delivered: a worker's
outbox forwarder, after the local entry is staged or after the rename into
the hub's inbox; prune-checkpointed|prune-days-removed|prune-records-deleted|
prune-job-removed: `trivialci prune`, after each of its steps, hub/retention.py),
so a test can show that a restart loses nothing wherever the crash falls.
TRIVIALCI_TEST_TERM_AT=opened sends the node a SIGTERM instead, right after it
opened its node directory (a stop asked during start-up). Unset, each costs one
string comparison.
"""

import os
import signal

CRASH_AT = os.environ.get("TRIVIALCI_TEST_CRASH_AT", "")
TERM_AT = os.environ.get("TRIVIALCI_TEST_TERM_AT", "")


def crash_point(where: str) -> None:
    if CRASH_AT == where:
        os.kill(os.getpid(), signal.SIGKILL)


def term_point(where: str) -> None:
    if TERM_AT == where:
        os.kill(os.getpid(), signal.SIGTERM)
