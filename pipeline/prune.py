"""Hub: once a day (tick.py sends `prune`), remove what the retention policy below lets go.

Edit the constants to change the policy. A finished job leaves the artifact store
when it ended more than KEEP_DAYS days ago, and is not among the KEEP_LAST newest
jobs of its (repository, branch, kind), and is not the newest PASSED of them; a
job that is not final never goes. The day folders of done/ (the hub's and every
worker's) go after KEEP_DAYS days, those of failed/ after KEEP_FAILED_DAYS, and
the records of HOUSEKEEPING_EVENTS after HOUSEKEEPING_DAYS. inbox/, work/ and
tmp/ are never touched. `trivialci prune --dry-run` shows what a prune would remove.
"""

import os

from trivialci.hub import RetentionPolicy, prune, refuse_off_hub

refuse_off_hub("prune")  # a hub's event dropped into a worker's inbox changes nothing there

KEEP_DAYS = 30  # finished jobs and done/ records younger than this stay
KEEP_LAST = 20  # and the newest N jobs of each (repository, branch, kind), however old
KEEP_FAILED_DAYS = 90  # failed/ records: what went wrong is worth keeping longer
HOUSEKEEPING_DAYS = 1  # ticks and prunes: one file set each, every few seconds
HOUSEKEEPING_EVENTS = ["tick", "prune"]

os.nice(10)  # the hub's other scripts come first while this one walks the store
policy = RetentionPolicy(KEEP_DAYS, KEEP_LAST, KEEP_FAILED_DAYS, HOUSEKEEPING_DAYS, tuple(HOUSEKEEPING_EVENTS))
plan = prune(os.environ["TRIVIALCI_SPOOL"], os.environ.get("TRIVIALCI_STORE") or None, policy)
print("\n".join(plan.lines(done=True)))
