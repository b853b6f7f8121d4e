"""The node: the one loop that the hub and every worker run.

    inbox/NAME --claim--> work/ --run TYPE script--> done/DAY/ or failed/DAY/

One iteration (`run_once`) collects scripts that exited and records them,
enforces timeouts, claims complete inbox entries in arrival order while fewer
than `jobs` scripts run, does the periodic chores (rescan, heartbeat, tmp/
reaping) and then waits, on one selector, for the first of: a child's exit
(pidfd), a notification from the watcher, a signal, or the next deadline.

A node that cannot record (full disk, read-only spool) holds what it has in
work/, stops claiming, says why, and retries until it can. At start it first
takes back what is in its work/ (see recovery.py). An exception inside an
iteration is logged and the loop goes on.
"""

import logging
import os
import selectors
import signal
import socket
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

from . import mounts, runner
from .claim import Claim, StampClock, claim, open_claimed
from .delivery import emit
from ..errors import SpoolUnavailable, TrivialCiError
from .event import BadEvent
from .faults import crash_point
from .heartbeat import HEARTBEAT_SECONDS, remove_heartbeat, write_heartbeat
from .inbox import InboxTracker
from .layout import OUTBOX_ENV, NodeDir
from .lock import NodeLock
from .outbox import Forwarder, ForwarderThread, waiting
from .record import Outcome, record
from .recovery import recover
from .terminal import printable

log = logging.getLogger("trivialci")

RETRY_SECONDS = 1.0
TMP_MAX_AGE = 86400.0
REAP_EVERY = 3600.0


@dataclass
class NodeConfig:
    pipeline: Path
    jobs: int = 1
    timeout: float = 3600.0
    grace: float = 5.0
    max_attempts: int = 3
    poll: float | None = None  # poll every N seconds instead of trusting inotify
    settle: float = 1.0
    rescan: float = 5.0
    heartbeat: float = HEARTBEAT_SECONDS
    announce: str | None = None  # an event type dropped into its own inbox at start (if it has a script)
    tick: float | None = None  # drop a `tick` event into its own inbox every N seconds (if it has a script)
    advertise: dict = field(default_factory=dict)  # extra TRIVIALCI_* variables, and heartbeat fields
    outbox: Path | None = None  # a worker's: its scripts' events for the hub wait there (see outbox.py)


class Node:
    def __init__(self, node_dir: NodeDir, config: NodeConfig):
        self.node_dir = node_dir
        self.config = config
        self.tracker = InboxTracker(node_dir.inbox, config.settle)
        self.lock = NodeLock(node_dir.lock)
        self.clock = StampClock()
        self.runs: dict[int, runner.Run] = {}  # by pid
        self.held: deque[Claim] = deque()  # claimed, waiting to (re)start
        self.unrecorded: deque[Outcome] = deque()  # decided, not yet written down
        self.blocked_reason: str | None = None
        self._inbox_unreadable = False
        self.stopping = False
        self._hurry = False
        self.polling_reason: str | None = None
        self.started = time.time()
        self._hints: deque[tuple[str, bool]] = deque()
        self._selector = selectors.DefaultSelector()
        self._wake_read, self._wake_write = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._selector.register(self._wake_read, selectors.EVENT_READ)
        self._watcher = None
        self._due = {"rescan": 0.0, "heartbeat": 0.0, "reap": 0.0, "retry": 0.0, "tick": 0.0}
        self._pending_tick: Path | None = None
        self._script_env = {**os.environ, **{f"TRIVIALCI_{k.upper()}": str(v) for k, v in config.advertise.items()}}
        self.forwarder: ForwarderThread | None = None
        if config.outbox is not None:
            self._script_env[OUTBOX_ENV] = str(config.outbox)

    # --- life cycle -------------------------------------------------------

    def open(self) -> "Node":
        """Take the node directory: lock, recover work/, start watching."""
        try:
            self._create_and_lock()
        except BaseException:
            self._close_descriptors()
            raise
        try:
            self._choose_watch_mode()
            self._prepare_own_disk()
            self._recover()
            if self.forwarder is not None:  # first of all, what an earlier run could not deliver
                self.forwarder.start()
            self._beat()
            if self.config.announce:
                self._emit_to_self(self.config.announce, {"node": self.node_dir.node, **self.config.advertise})
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
        if self._watcher:
            self._watcher.stop()
            self._watcher = None
        if self.forwarder is not None:
            self.forwarder.stop()
            self.forwarder = None
        try:
            remove_heartbeat(self.node_dir)
            self.lock.release()
        except OSError as error:  # the spool went away: the lock is taken over once its holder is gone
            log.warning("%s: could not remove its heartbeat and lock: %s", self.node_dir.node, error)
        self._close_descriptors()

    def _close_descriptors(self) -> None:
        self._selector.close()
        os.close(self._wake_read)
        os.close(self._wake_write)

    def __enter__(self):
        return self.open()

    def __exit__(self, *exc):
        self.close()

    def serve(self, until_idle: bool = False) -> None:
        """Run until SIGTERM or SIGINT (or, `until_idle`, until the inbox is handled), then `shutdown`."""
        previous = self._install_signal_handlers()
        self._due["rescan"] = 0.0
        try:
            while not self.stopping and (self.busy() or not until_idle):
                self.run_once()
            self.shutdown()
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
        return bool(self.runs or self.held or self.unrecorded or len(self.tracker) or self._rescan_due())

    def request_stop(self) -> None:
        self.stopping = True
        self._wake()

    def shutdown(self) -> None:
        """Stop claiming; let running scripts finish for `grace` seconds, then stop them.

        Events whose scripts were stopped stay in work/: the next start runs them again.
        """
        self.stopping = True
        self._wait_for_runs(self.config.grace)
        for run in self.runs.values():
            self._stop_run(run, "the node is stopping")
        self._wait_for_runs(self.config.grace)
        for run in list(self.runs.values()):
            run.signal(signal.SIGKILL)
            run.process.wait()
            self._forget_run(run)
            os.close(run.log_fd)
        self._record_pending()

    # --- one iteration ----------------------------------------------------

    def run_once(self, timeout: float | None = None) -> None:
        """One turn of the loop: wait for something to do, then do it; an error is logged and the loop goes on."""
        self._wait(self._next_wakeup(timeout))
        try:
            self._collect_exited()
            self._enforce_deadlines()
            self._record_pending()
            if not self.stopping and self._may_claim():
                self._look_at_inbox()
                self._start_what_fits()
            self._chores()
        except Exception:
            log.exception("%s: error in the node loop; carrying on", self.node_dir.node)
            time.sleep(0.1)  # do not spin on a persistent fault

    def _look_at_inbox(self) -> None:
        if self._rescan_due():
            self._due["rescan"] = time.monotonic() + self._rescan_interval()
            try:
                self.tracker.rescan()
            except OSError as error:  # a spool on a mount that went away: say so once, look again later
                self._block(f"cannot read {self.node_dir.inbox}: {error.strerror or error}")
                self._inbox_unreadable = True
                return
            if self._inbox_unreadable:
                self._inbox_unreadable = False
                self._unblock()
        while self._hints:
            name, closed = self._hints.popleft()
            self.tracker.notice(name, closed, notified=True)
        if self.tracker.has_unsettled():
            self.tracker.recheck_unsettled()

    def _may_claim(self) -> bool:
        """Not while outcomes wait to be written down; while blocked, only to retry now and then."""
        if self.unrecorded:
            return False
        return self.blocked_reason is None or time.monotonic() >= self._due["retry"]

    def _start_what_fits(self) -> None:
        while len(self.runs) < self.config.jobs and self._may_claim():
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
        stdin_fd, body, payload = open_claimed(taken)
        try:
            script = runner.find_script(self.config.pipeline, taken.type)
            if script is None:
                raise BadEvent(self._no_script_reason(taken.type))
            timeout = _event_timeout(payload, self.config.timeout)
            log_fd = runner.open_log(taken)
            self._run_script(taken, script, stdin_fd, body, log_fd, timeout)
        finally:
            os.close(stdin_fd)
        crash_point("started")

    def _run_script(self, taken: Claim, script: Path, stdin_fd: int, body: bytes, log_fd: int, timeout: float) -> None:
        env = runner.script_environment(self._script_env, taken, {"TRIVIALCI_PIPELINE": str(self.config.pipeline)})
        try:
            run = runner.start(taken, script, stdin_fd, body, env, log_fd, timeout)
        except OSError as error:
            if error.errno not in runner.SCRIPT_FAULTS:
                raise  # fork or memory trouble: the event waits in work/ and is retried
            os.write(log_fd, f"trivialci: cannot run {script}: {error}\n".encode())
            self._sync_log(log_fd)
            raise BadEvent(f"cannot run {script}: {error.strerror or error} (is its #! line right?)") from None
        except BaseException:
            os.close(log_fd)
            raise
        self._track(run)

    def _no_script_reason(self, event_type: str) -> str:
        return (f"no script for event type {event_type!r} in {self.config.pipeline}: "
                f"add {event_type}.py or an executable {event_type} there")

    # --- running scripts --------------------------------------------------

    def _track(self, run: runner.Run) -> None:
        self.runs[run.process.pid] = run
        if run.pidfd is not None:
            self._selector.register(run.pidfd, selectors.EVENT_READ, run)

    def _forget_run(self, run: runner.Run) -> None:
        self.runs.pop(run.process.pid, None)
        if run.pidfd is not None:
            self._selector.unregister(run.pidfd)
            os.close(run.pidfd)
            run.pidfd = None

    def _collect_exited(self) -> None:
        for run in list(self.runs.values()):
            if run.exited() and not self._waiting_out_grace(run):
                self._finish(run)

    def _waiting_out_grace(self, run: runner.Run) -> bool:
        """A stopped script's children get their grace too before the script counts as ended."""
        if run.terminated_at is None or run.killed or not run.leftovers():
            return False
        if run.pidfd is not None:  # nothing more to wait for on it; the grace deadline wakes us
            self._selector.unregister(run.pidfd)
            os.close(run.pidfd)
            run.pidfd = None
        return True

    def _finish(self, run: runner.Run) -> None:
        self._forget_run(run)
        if run.stopped_by_node:
            os.close(run.log_fd)
            return  # stays in work/ for the next start
        crash_point("exited")
        timed_out = run.terminated_at is not None
        outcome = Outcome.of_exit(run.claim, run.process.returncode, run.started, run.script, run.timeout, timed_out)
        self._sync_log(run.log_fd)
        self._decide(outcome)

    def _enforce_deadlines(self) -> None:
        now = time.monotonic()
        for run in list(self.runs.values()):
            if run.terminated_at is None and now >= run.deadline:
                self._stop_run(run, f"timed out after {run.timeout:g} s")
            elif run.terminated_at is not None and not run.killed and now >= run.terminated_at + self.config.grace:
                run.signal(signal.SIGKILL)
                run.killed = True
                if run.exited():
                    self._finish(run)

    def _stop_run(self, run: runner.Run, why: str) -> None:
        os.write(run.log_fd, f"--- trivialci: {why}; sending SIGTERM, SIGKILL after {self.config.grace:g} s ---\n".encode())
        run.signal(signal.SIGTERM)
        run.terminated_at = time.monotonic()
        run.stopped_by_node = self.stopping

    def _wait_for_runs(self, seconds: float) -> None:
        """Let scripts end by themselves for up to `seconds` (cut short by a second stop signal)."""
        deadline = time.monotonic() + seconds
        while self.runs and time.monotonic() < deadline and not self._hurry:
            self._collect_exited()
            self._enforce_deadlines()
            self._record_pending()
            self._wait(min(0.2, max(0.0, deadline - time.monotonic())))

    @staticmethod
    def _sync_log(log_fd: int) -> None:
        try:
            if os.fstat(log_fd).st_size:  # an empty log has nothing to make durable
                os.fsync(log_fd)
        except OSError:
            pass  # the log is the script's output; its record still goes on
        finally:
            os.close(log_fd)

    # --- recording --------------------------------------------------------

    def _decide(self, outcome: Outcome) -> None:
        self.unrecorded.append(outcome)
        self._record_pending()

    def _record_pending(self) -> None:
        while self.unrecorded:
            outcome = self.unrecorded[0]
            try:
                final = record(outcome)
            except OSError as error:
                self._block(f"cannot record {outcome.claim.name}: {error}")
                return
            self.unrecorded.popleft()
            self._log_handled(outcome, final)
            self._unblock()

    def _log_handled(self, outcome: Outcome, final: Path) -> None:
        claim = outcome.claim
        where = final.relative_to(self.node_dir.root)
        log.info("%s %s %s in %.3fs, attempt %d: %s -> %s", self.node_dir.node, printable(claim.original_name or claim.name),
                 outcome.status.value, outcome.ended - outcome.started, claim.attempt, outcome.reason, where)

    def _block(self, reason: str) -> None:
        if self.blocked_reason is None:
            log.error("%s: %s; holding %d event(s) in work/ and claiming nothing until this works again "
                      "(is the spool's disk full, or its mount gone?)", self.node_dir.node, reason,
                      len(self.held) + len(self.unrecorded) + len(self.runs))
        self.blocked_reason = reason
        self._due["retry"] = time.monotonic() + RETRY_SECONDS

    def _unblock(self) -> None:
        if self.blocked_reason is not None and not self.unrecorded:
            log.warning("%s: recording and starting work again; resuming", self.node_dir.node)
            self.blocked_reason = None

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
        if self._watcher is not None and not self._watcher.alive():
            log.warning("%s: the inbox watcher died; restarting it (the rescan covered the gap)", self.node_dir.node)
            self._watcher.stop()  # its emitter thread and inotify descriptor outlive a dead observer thread
            self._start_watcher()

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
            if self.blocked_reason is None:
                log.warning("%s: cannot write the heartbeat: %s", self.node_dir.node, error)

    def describe(self) -> dict:
        """What the heartbeat file says about this node."""
        return {
            "node": self.node_dir.node,
            **{k.lower(): v for k, v in self.config.advertise.items()},
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.started)),
            "polling": self.polling_reason,
            "jobs": self.config.jobs,
            "running": [run.claim.id for run in self.runs.values()],
            "blocked": self.blocked_reason,
            "pipeline": str(self.config.pipeline),
            **({"outbox": len(waiting(self.config.outbox))} if self.config.outbox is not None else {}),
        }

    # --- waiting ----------------------------------------------------------

    def _next_wakeup(self, timeout: float | None) -> float:
        now = time.monotonic()
        moments = [self._due["rescan"], self._due["heartbeat"]] + ([self._due["tick"]] if self.config.tick else [])
        moments += [run.deadline if run.terminated_at is None else run.terminated_at + self.config.grace
                    for run in self.runs.values()]
        if self.blocked_reason is not None:
            moments.append(self._due["retry"])
        if self.tracker.has_unsettled():
            moments.append(now + min(self.config.settle / 4, 0.25))
        if any(run.pidfd is None and not run.killed for run in self.runs.values()):
            moments.append(now + 0.05)  # no pidfd on this kernel: poll exits
        wait = max(0.0, min(moments) - now)
        return wait if timeout is None else min(wait, timeout)

    def _wait(self, seconds: float) -> None:
        if self.tracker.has_ready() and len(self.runs) < self.config.jobs and self.blocked_reason is None \
                and not self.stopping:
            seconds = 0.0
        for key, _ in self._selector.select(seconds):
            if key.fd == self._wake_read:
                _drain_pipe(self._wake_read)

    def _wake(self) -> None:
        try:
            os.write(self._wake_write, b"x")
        except BlockingIOError:
            pass  # a wake-up is pending already

    def _hint(self, name: str, closed: bool) -> None:
        """Called from the watcher's thread: queue the name and wake the loop."""
        self._hints.append((name, closed))
        self._wake()

    def _rescan_due(self) -> bool:
        return time.monotonic() >= self._due["rescan"]

    def _rescan_interval(self) -> float:
        return self.config.poll if self._watcher is None else self.config.rescan

    # --- start-up ---------------------------------------------------------

    def _choose_watch_mode(self) -> None:
        fs_type = mounts.filesystem_type(self.node_dir.inbox)
        if self.config.poll is None and mounts.sees_other_machines(fs_type):
            self.config.poll = 1.0
            self.polling_reason = (f"the spool is on {fs_type}, where inotify cannot see other machines' "
                                   f"writes: polling every {self.config.poll:g} s")
        elif self.config.poll is not None:
            self.polling_reason = f"polling every {self.config.poll:g} s (--poll)"
        if self.polling_reason is None:
            self._start_watcher()
        else:
            log.info("%s: %s", self.node_dir.node, self.polling_reason)

    def _start_watcher(self) -> None:
        try:
            from .watcher import InboxWatcher

            self._watcher = InboxWatcher(self.node_dir.inbox, self._hint)
            self._watcher.start()
        except Exception as error:  # no inotify here (limits, kernel): polling still works
            self._watcher = None
            self.config.poll = self.config.poll or 1.0
            self.polling_reason = f"inotify is not available ({error}): polling every {self.config.poll:g} s"
            log.warning("%s: %s", self.node_dir.node, self.polling_reason)

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


def reap_tmp(node_dir: NodeDir, max_age: float = TMP_MAX_AGE) -> int:
    """Remove files in tmp/ older than `max_age`: writers that died mid-delivery."""
    removed = 0
    cutoff = time.time() - max_age
    for entry in os.scandir(node_dir.tmp):
        try:
            if entry.is_file(follow_symlinks=False) and entry.stat(follow_symlinks=False).st_mtime < cutoff:
                os.unlink(entry.path)
                removed += 1
        except OSError:
            pass
    if removed:
        log.info("%s: removed %d stale file(s) from tmp/", node_dir.node, removed)
    return removed


def _event_timeout(payload: dict, default: float) -> float:
    value = payload.get("_timeout", default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 7 * 86400:
        raise BadEvent(f"\"_timeout\" must be a number of seconds between 0 and 604800, not {value!r}")
    return float(value)


def _drain_pipe(fd: int) -> None:
    try:
        while os.read(fd, 4096):
            pass
    except BlockingIOError:
        pass
