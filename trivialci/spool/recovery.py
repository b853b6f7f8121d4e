"""Recovery: what a node does at start with what it finds in its work/.

Everything in work/ belongs to this node directory and to a process that is
gone (the node lock guarantees it). For each event id found there:
  - a result beside it: the outcome was decided; finish moving it.
  - a claimed event without a result: it was interrupted. Whatever its script
    left running is stopped, then it is claimed again as the next attempt
    (TRIVIALCI_ATTEMPT > 1), or, once `max_attempts` were made, recorded in
    failed/ as "gave up after N attempts".
  - a lone .log (its event was removed by hand): moved to failed/DAY/.
Handling is at least once: a script must expect to see an event again.
"""

import logging
import os
import time
from dataclasses import dataclass, field

from . import processes
from .claim import Claim, parse_claimed
from .layout import NodeDir
from .record import Outcome, Status, decided_status, finish, record

log = logging.getLogger("trivialci")


@dataclass
class Recovered:
    to_run: list[Claim] = field(default_factory=list)
    finished: int = 0
    gave_up: int = 0


def recover(node_dir: NodeDir, max_attempts: int, grace: float) -> Recovered:
    """Take back what is in work/; the claims that must run again, oldest first."""
    recovered = Recovered()
    names = sorted(os.listdir(node_dir.work))
    claims = [c for c in (parse_claimed(node_dir, n) for n in names) if c]
    _stop_leftovers(claims, node_dir, grace)
    for claim in claims:
        _take_back(claim, max_attempts, recovered)
    _finish_lone_results(node_dir, names + _logs_kept_elsewhere(node_dir), claims, recovered)
    return recovered


def _logs_kept_elsewhere(node_dir: NodeDir) -> list[str]:
    """A worker's logs of running scripts are on its own disk, not in work/."""
    if node_dir.logs == node_dir.work:
        return []
    return sorted(name for name in os.listdir(node_dir.logs) if name.endswith(".log"))


def _take_back(claim: Claim, max_attempts: int, recovered: Recovered) -> None:
    status = decided_status(claim)
    if status is not None:
        finish(claim, status)
        recovered.finished += 1
    elif claim.attempt >= max_attempts:
        reason = (f"gave up after {claim.attempt} attempts: the node stopped or crashed "
                  "while handling it each time (see its log)")
        record(Outcome.refused(claim, reason))
        recovered.gave_up += 1
    else:
        os.rename(claim.path, claim.next_attempt().path)
        recovered.to_run.append(claim.next_attempt())


def _finish_lone_results(node_dir: NodeDir, names: list[str], claims: list[Claim], recovered: Recovered) -> None:
    """Results and logs whose event already moved on (a crash in the middle of a move)."""
    claimed_ids = {c.id for c in claims}
    for name in names:
        for suffix in (".result.json", ".log"):
            if name.endswith(suffix) and name[: -len(suffix)] not in claimed_ids:
                _finish_lone(node_dir, name[: -len(suffix)], recovered)


def _finish_lone(node_dir: NodeDir, event_id: str, recovered: Recovered) -> None:
    stamp, separator, stem = event_id[:24], event_id[24:25], event_id[25:]  # the stamp has dashes of its own
    claim = Claim(node_dir, stamp, stem + ".json")
    if separator != "-" or not stem or not (claim.result_path.exists() or claim.log_path.exists()):
        return
    status = decided_status(claim)
    if status is None:
        log.warning("%s: %s has a log but its event is gone from work/; moving the log to failed/",
                    node_dir.node, event_id)
    finish(claim, status or Status.FAILED)
    recovered.finished += 1


def _stop_leftovers(claims: list[Claim], node_dir: NodeDir, grace: float) -> None:
    """Stop scripts that a killed node left running, TERM first, KILL after `grace`."""
    undecided = [c for c in claims if decided_status(c) is None]
    alive = [c for c in undecided if processes.marked_processes(c.id, str(node_dir.root))]
    for claim in alive:
        log.info("%s: stopping what is left of %s from before the restart", node_dir.node, claim.id)
        processes.signal_all(None, claim.id, str(node_dir.root), processes.TERMINATE)
    deadline = time.monotonic() + grace
    while alive and time.monotonic() < deadline:
        alive = [c for c in alive if processes.marked_processes(c.id, str(node_dir.root))]
        time.sleep(0.05)  # polling a foreign process's exit: there is no descriptor to wait on
    for claim in alive:
        processes.signal_all(None, claim.id, str(node_dir.root), processes.KILL)
