"""The node: the one loop that the hub and every worker run.

    inbox/NAME --claim--> work/ --run TYPE script--> done/DAY/ or failed/DAY/

One iteration (`run_once`) collects scripts that exited and records them,
enforces timeouts, claims complete inbox entries in arrival order while fewer
than `jobs` scripts run, does the periodic chores (rescan, heartbeat, tmp/
reaping) and then waits, on one selector, for the first of: a child's exit
(pidfd), a notification from the watcher, a signal, or the next deadline.

The parts stand in modules of their own: the scripts it runs and their
deadlines (children.py), how it learns of new entries (notices.py), its one
wait (wakeup.py), and being blocked (blocking.py): a node that cannot read or
record (full disk, read-only spool, a mount gone) holds what it has in work/,
stops claiming, says why, and retries with backoff until it can. At start it
first takes back what is in its work/ (see recovery.py). An exception inside
an iteration is logged and the loop goes on.
"""

import logging
import os
import signal
import socket
import time
from contextlib import contextmanager
from collections import deque
from pathlib import Path

from . import runner
from .blocking import Blocking
from .children import Children
from .claim import Claim, StampClock, claim
from .config import NodeConfig
from .delivery import emit, reap_tmp
from ..errors import SpoolUnavailable, TrivialCiError
from .event import BadEvent
from .faults import crash_point, term_point
from .forkserver import ForkServer
from .heartbeat import remove_heartbeat, write_heartbeat
from .inbox import InboxTracker
from .notices import InboxNotices
from .layout import OUTBOX_ENV, NodeDir
from .lock import NodeLock
from .outbox import Forwarder, ForwarderThread, waiting
from .record import Outcome, record_all, stage
from .recovery import recover
from .terminal import printable
from .wakeup import Wakeup

log = logging.getLogger("trivialci")

REAP_EVERY = 3600.0


class Node:
    def __init__(self, node_dir: NodeDir, config: NodeConfig):
        self.node_dir = node_dir
        self.config = config
        self.tracker = InboxTracker(node_dir.inbox, config.settle)
        self.lock = NodeLock(node_dir.lock)
        self.clock = StampClock()
        self.held: deque[Claim] = deque()  # claimed, waiting to (re)start
        self.unrecorded: deque[Outcome] = deque()  # decided, not yet written down
        self.blocking = Blocking()
        self._inbox_unreadable = False
        self.stopping = False
        self._hurry = False
        self.started = time.time()
        self.wakeup = Wakeup()
        self.children = Children(self.wakeup.selector, config.grace)
        self.notices = InboxNotices(node_dir.inbox, node_dir.node, self.wakeup.wake, config.poll, config.rescan)
        self._due = {"rescan": 0.0, "heartbeat": 0.0, "reap": 0.0, "tick": 0.0}
        self._pending_tick: Path | None = None
        self._script_env = {**os.environ, **{f"TRIVIALCI_{k.upper()}": str(v) for k, v in config.advertise.items()}}
        self.forwarder: ForwarderThread | None = None
        if config.outbox is not None:
            self._script_env[OUTBOX_ENV] = str(config.outbox)
        self.fork_server = ForkServer(config.pipeline, self._script_env, node_dir.node, config.fork_server)

    # --- life cycle -------------------------------------------------------

    def open(self) -> "Node":
        """Take the node directory: lock, recover work/, start watching."""
        try:
            self._create_and_lock()
        except BaseException:
            self.wakeup.close()
            raise
        try:
            self.notices.start()
            self.fork_server.start()  # it imports while the node recovers
            self._prepare_own_disk()
            self._recover()
            if self.forwarder is not None:  # first of all, what an earlier run could not deliver
                self.forwarder.start()
            self._beat()
            if self.config.announce:
                self._emit_to_self(self.config.announce, {"node": self.node_dir.node, **self.config.advertise})
            term_point("opened")
        except BaseException:
            self.close()
            raise
        return self

    def _create_and_lock(self) -> None:
        try:
            self.node_dir.create()
            self.lock.acquire()
        except OSError as error:
            raise SpoolUnavailable(f"cannot use {self.node_dir.root}: {error.strerror or error} "
                                   "(does the spool exist, is it writable, is its disk full?)") from None

    def _prepare_own_disk(self) -> None:
        """A worker's running logs and outbox, on its own disk."""
        if self.node_dir.running_logs is None and self.config.outbox is None:
            return
        try:
            self.node_dir.logs.mkdir(parents=True, exist_ok=True)
            if self.config.outbox is not None:
                self.forwarder = ForwarderThread(Forwarder(self.config.outbox, self.node_dir), self.node_dir.node)
                self.forwarder.forwarder.create()
        except OSError as error:
            raise SpoolUnavailable(f"cannot use {error.filename or self.node_dir.logs}: {error.strerror or error} "
                                   "(the worker's --workdir must be on its own disk, writable, not full)") from None

    def close(self) -> None:
        self.notices.stop()
        self.fork_server.close()
        if self.forwarder is not None:
            self.forwarder.stop()
            self.forwarder = None
        try:
            remove_heartbeat(self.node_dir)
            self.lock.release()
        except OSError as error:  # the spool went away: the lock is taken over once its holder is gone
            log.warning("%s: could not remove its heartbeat and lock: %s", self.node_dir.node, error)
        self.wakeup.close()

    def __enter__(self):
        return self.open()

    def __exit__(self, *exc):
        self.close()

    def serve(self, until_idle: bool = False) -> None:
        """Run until asked to stop (see `stop_signals`) or, `until_idle`, until the inbox is handled; then `shutdown`."""
        self._due["rescan"] = 0.0
        while not self.stopping and (self.busy() or not until_idle):
            self.run_once()
        self.shutdown()

    @contextmanager
    def stop_signals(self):
        """While the block runs, SIGTERM and SIGINT ask the node to stop (a second one hurries it).

        Entered before `open` and left after `close`, so that a signal during start-up or
        shutdown is a request to stop, never the default death that skips recording.
        """
        previous = self._install_signal_handlers()
        try:
            yield self
        finally:
            self._restore_signal_handlers(previous)

    def drain(self, timeout: float | None = None) -> bool:
        """Handle everything in the inbox, then return True (False if `timeout` ran out)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        self._due["rescan"] = 0.0
        while self.busy():
            if deadline is not None and time.monotonic() > deadline:
                return False
            self.run_once(timeout=0.2)
        return True

    def busy(self) -> bool:
        return bool(self.children or self.held or self.unrecorded or len(self.tracker) or self._rescan_due())

    def request_stop(self) -> None:
        self.stopping = True
        self.wakeup.wake()

    def shutdown(self) -> None:
        """Stop claiming; let running scripts finish for `grace` seconds, then stop them.

        Events whose scripts were stopped stay in work/: the next start runs them again.
        """
        self.stopping = True
        self._wait_for_runs(self.config.grace)
        for run in self.children:
            self.children.stop(run, "the node is stopping", by_node=True)
        self._wait_for_runs(self.config.grace)
        self.children.kill_all()
        self._record_pending()

    # --- one iteration ----------------------------------------------------

    def run_once(self, timeout: float | None = None) -> None:
        """One turn of the loop: wait for something to do, then do it; an error is logged and the loop goes on."""
        self._wait(self._next_wakeup(timeout))
        try:
            self._collect_exited()
            self._enforce_deadlines()
            # Before the next script starts: a hub script that rebuilds state/ must find every event handled
            # before it in done/ (an outcome recorded later would be missing from the rebuild for good).
            self._record_pending()
            if not self.stopping and self._may_claim():
                self._look_at_inbox()
                self._start_what_fits()
            self._chores()
            self.blocking.back_off()  # still blocked after a retry: wait longer for the next one
        except Exception:
            log.exception("%s: error in the node loop; carrying on", self.node_dir.node)
            time.sleep(0.1)  # do not spin on a persistent fault

    def _look_at_inbox(self) -> None:
        if self._rescan_due():
            self._due["rescan"] = time.monotonic() + self.notices.rescan_interval()
            try:
                self.tracker.rescan()
            except OSError as error:  # a spool on a mount that went away: say so once, look again at each retry
                self._block(f"cannot read {self.node_dir.inbox}: {error.strerror or error}")
                self._inbox_unreadable = True
                self._due["rescan"] = self.blocking.retry_at
                return
            if self._inbox_unreadable:
                self._inbox_unreadable = False
                self._unblock()
        while self.notices.hints:
            name, closed = self.notices.hints.popleft()
            self.tracker.notice(name, closed, notified=True)
        if self.tracker.has_unsettled():
            self.tracker.recheck_unsettled()

    def _may_claim(self) -> bool:
        """Not while outcomes could not be written down; while blocked, only to retry now and then."""
        if self.unrecorded and self.blocking.reason is not None:
            return False
        return self.blocking.retry_due()

    def _start_what_fits(self) -> None:
        while len(self.children) < self.config.jobs and self._may_claim():
            taken = self.held.popleft() if self.held else self._claim_next()
            if taken is None or not self._start(taken):
                return
            self._unblock()

    def _claim_next(self) -> Claim | None:
        while (name := self.tracker.pop_ready()) is not None:
            try:
                taken = claim(self.node_dir, name, self.clock.next())
            except OSError as error:  # the next rescan finds the entry again
                self._block(f"cannot claim {name!r}: {error}")
                return None
            if taken is not None:
                crash_point("claimed")
                return taken
        return None

    def _start(self, taken: Claim) -> bool:
        """Run the claim's script, or refuse it; False when it must wait (I/O trouble)."""
        try:
            self._open_and_run(taken)
        except BadEvent as refusal:
            self._decide(Outcome.refused(taken, str(refusal)))
        except FileNotFoundError:
            log.warning("%s: %s vanished from work/ before it ran", self.node_dir.node, taken.path.name)
        except OSError as error:
            self.held.appendleft(taken)
            self._block(f"cannot start {taken.name}: {error}")
            return False
        return True

    def _open_and_run(self, taken: Claim) -> None:
        extra = {"TRIVIALCI_PIPELINE": str(self.config.pipeline)}
        self.children.track(runner.run_claim(taken, self.config.pipeline, {**self._script_env, **extra},
                                             self.config.timeout, self.fork_server))
        crash_point("started")

    # --- running scripts --------------------------------------------------

    def _collect_exited(self) -> None:
        for run in self.children.ended():
            self._finish(run)

    def _enforce_deadlines(self) -> None:
        for run in self.children.enforce_deadlines(self.stopping):
            self._finish(run)

    def _finish(self, run: runner.Run) -> None:
        if run.stopped_by_node:
            os.close(run.log_fd)
            return  # stays in work/ for the next start
        crash_point("exited")
        timed_out = run.terminated_at is not None
        outcome = Outcome.of_exit(run.claim, run.process.returncode, run.started, run.script, run.timeout, timed_out)
        outcome.log_fd = run.log_fd  # synced when it is recorded, at the end of this turn
        self.unrecorded.append(outcome)
        if (error := stage(outcome)) is not None:  # a full disk shows here, before the next claim
            self._block(f"cannot record {run.claim.name}: {error}")

    def _wait_for_runs(self, seconds: float) -> None:
        """Let scripts end by themselves for up to `seconds` (cut short by a second stop signal)."""
        deadline = time.monotonic() + seconds
        while self.children and time.monotonic() < deadline and not self._hurry:
            self._collect_exited()
            self._enforce_deadlines()
            self._record_pending()
            self._wait(min(0.2, max(0.0, deadline - time.monotonic())))

    # --- recording --------------------------------------------------------

    def _decide(self, outcome: Outcome) -> None:
        self.unrecorded.append(outcome)
        self._record_pending()

    def _record_pending(self) -> None:
        recorded, error = record_all(self.unrecorded)
        for outcome, final in recorded:
            self._log_handled(outcome, final)
        if error is not None:
            self._block(f"cannot record {self.unrecorded[0].claim.name}: {error}")
        elif recorded:
            self._unblock()

    def _log_handled(self, outcome: Outcome, final: Path) -> None:
        claim, where = outcome.claim, final.relative_to(self.node_dir.root)
        log.info("%s %s %s in %.3fs, attempt %d: %s -> %s", self.node_dir.node,
                 printable(claim.original_name or claim.name), outcome.status.value,
                 outcome.ended - outcome.started, claim.attempt, outcome.reason, where)

    def _block(self, reason: str) -> None:
        if self.blocking.block(reason):
            log.error("%s: %s; holding %d event(s) in work/ and claiming nothing until this works again "
                      "(is the spool's disk full, or its mount gone?)", self.node_dir.node, reason,
                      len(self.held) + len(self.unrecorded) + len(self.children))

    def _unblock(self) -> None:
        if not self.unrecorded and self.blocking.unblock():
            log.warning("%s: recording and starting work again; resuming", self.node_dir.node)

    # --- chores -----------------------------------------------------------

    def _chores(self) -> None:
        now = time.monotonic()
        if now >= self._due["heartbeat"]:
            self._beat()
        if self.config.tick and now >= self._due["tick"]:
            self._due["tick"] = now + self.config.tick
            self._tick()
        if now >= self._due["reap"]:
            self._due["reap"] = now + REAP_EVERY
            reap_tmp(self.node_dir)
        self.notices.restart_if_dead()

    def _tick(self) -> None:
        """Time as an event: one `tick` at a time waits in the inbox, never a pile of them."""
        if self._pending_tick is None or not self._pending_tick.exists():
            self._pending_tick = self._emit_to_self("tick", {"at": time.time()})

    def _emit_to_self(self, event_type: str, payload: dict) -> Path | None:
        if runner.find_script(self.config.pipeline, event_type) is None:
            return None
        try:
            return emit(event_type, payload, to=str(self.node_dir.root))
        except TrivialCiError as error:
            log.warning("%s: cannot drop %s into its own inbox: %s", self.node_dir.node, event_type, error)
            return None

    def _beat(self) -> None:
        self._due["heartbeat"] = time.monotonic() + self.config.heartbeat
        try:
            self.lock.touch()
            write_heartbeat(self.node_dir, self.describe())
        except OSError as error:
            if self.blocking.reason is None:
                log.warning("%s: cannot write the heartbeat: %s", self.node_dir.node, error)

    def describe(self) -> dict:
        """What the heartbeat file says about this node."""
        return {
            "node": self.node_dir.node,
            **{k.lower(): v for k, v in self.config.advertise.items()},
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.started)),
            "polling": self.notices.polling_reason,
            "jobs": self.config.jobs,
            "running": self.children.event_ids(),
            "blocked": self.blocking.reason,
            "pipeline": str(self.config.pipeline),
            **({"outbox": len(waiting(self.config.outbox))} if self.config.outbox is not None else {}),
        }

    # --- waiting ----------------------------------------------------------

    def _next_wakeup(self, timeout: float | None) -> float:
        now = time.monotonic()
        moments = [self._due["rescan"], self._due["heartbeat"]] + ([self._due["tick"]] if self.config.tick else [])
        moments += self.children.deadlines()
        if self.blocking.reason is not None:
            moments.append(self.blocking.retry_at)
        if self.tracker.has_unsettled():
            moments.append(now + min(self.config.settle / 4, 0.25))
        if self.children.any_unwatched():
            moments.append(now + 0.05)  # no pidfd on this kernel: poll exits
        wait = max(0.0, min(moments) - now)
        return wait if timeout is None else min(wait, timeout)

    def _wait(self, seconds: float) -> None:
        if self.tracker.has_ready() and len(self.children) < self.config.jobs and self.blocking.reason is None \
                and not self.stopping:
            seconds = 0.0
        self.wakeup.wait(seconds)

    def _rescan_due(self) -> bool:
        return time.monotonic() >= self._due["rescan"]

    # --- start-up ---------------------------------------------------------

    def _recover(self) -> None:
        try:
            recovered = recover(self.node_dir, self.config.max_attempts, self.config.grace)
        except OSError as error:
            raise SpoolUnavailable(f"cannot take back {self.node_dir.work}: {error.strerror or error}; "
                                   "nothing was lost: free space (or fix the spool) and start the node again") from None
        self.held.extend(recovered.to_run)
        if recovered.to_run or recovered.finished or recovered.gave_up:
            log.warning("%s: took back work/: %d to run again, %d records finished, %d given up",
                        self.node_dir.node, len(recovered.to_run), recovered.finished, recovered.gave_up)

    def _install_signal_handlers(self):
        handlers = {}
        for signum in (signal.SIGTERM, signal.SIGINT):
            handlers[signum] = signal.signal(signum, self._on_stop_signal)
        return handlers

    def _on_stop_signal(self, signum, frame) -> None:
        if self.stopping:
            self._hurry = True  # asked twice: do not wait any longer
        log.info("%s: %s received; stopping", self.node_dir.node, signal.Signals(signum).name)
        self.request_stop()

    @staticmethod
    def _restore_signal_handlers(previous) -> None:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


