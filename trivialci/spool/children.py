"""The scripts a node runs: each one's exit, its deadline, and how it is stopped.

    running --deadline--> SIGTERM to its group --grace--> SIGKILL --> ended

A script's exit is seen on its pidfd, registered on the node's selector, so the
node's one wait wakes for it. A script that was stopped counts as ended only
once its leftovers (children, daemons carrying its event's marks) are gone or
its grace ran out. A script stopped because the node is stopping ends without
an outcome: its event stays in work/ and runs again at the next start.
"""

import os
import selectors
import signal
import time

from . import runner


class Children:
    """The node's running scripts, by pid."""

    def __init__(self, selector: selectors.BaseSelector, grace: float):
        self.selector = selector
        self.grace = grace
        self.runs: dict[int, runner.Run] = {}

    def __len__(self) -> int:
        return len(self.runs)

    def __iter__(self):
        return iter(list(self.runs.values()))

    def track(self, run: runner.Run) -> None:
        self.runs[run.process.pid] = run
        if run.pidfd is not None:
            self.selector.register(run.pidfd, selectors.EVENT_READ, run)

    def forget(self, run: runner.Run) -> None:
        self.runs.pop(run.process.pid, None)
        self._unwatch(run)

    def ended(self) -> list[runner.Run]:
        """Scripts that exited (and whose stopped leftovers are gone); they are forgotten."""
        done = [run for run in self if run.exited() and not self._waiting_out_grace(run)]
        for run in done:
            self.forget(run)
        return done

    def enforce_deadlines(self, stopping: bool) -> list[runner.Run]:
        """TERM the scripts past their deadline, KILL those past their grace; the ones that ended by it."""
        now, ended = time.monotonic(), []
        for run in self:
            if run.terminated_at is None and now >= run.deadline:
                self.stop(run, f"timed out after {run.timeout:g} s", stopping)
            elif run.terminated_at is not None and not run.killed and now >= run.terminated_at + self.grace:
                run.signal(signal.SIGKILL)
                run.killed = True
                if run.exited():
                    self.forget(run)
                    ended.append(run)
        return ended

    def stop(self, run: runner.Run, why: str, by_node: bool) -> None:
        os.write(run.log_fd, f"--- trivialci: {why}; sending SIGTERM, SIGKILL after {self.grace:g} s ---\n".encode())
        run.signal(signal.SIGTERM)
        run.terminated_at = time.monotonic()
        run.stopped_by_node = by_node

    def kill_all(self) -> None:
        """The last resort of a node that stops: KILL what is left and close its logs (the events stay in work/)."""
        for run in self:
            run.signal(signal.SIGKILL)
            run.process.wait()
            self.forget(run)
            os.close(run.log_fd)

    def deadlines(self) -> list[float]:
        """When each script must next be looked at (its timeout, or the end of its grace)."""
        return [run.deadline if run.terminated_at is None else run.terminated_at + self.grace for run in self]

    def any_unwatched(self) -> bool:
        """Whether a script has no pidfd (an old kernel): then exits are polled."""
        return any(run.pidfd is None and not run.killed for run in self)

    def event_ids(self) -> list[str]:
        return [run.claim.id for run in self]

    def _waiting_out_grace(self, run: runner.Run) -> bool:
        """A stopped script's children get their grace too before the script counts as ended."""
        if run.terminated_at is None or run.killed or not run.leftovers():
            return False
        self._unwatch(run)  # nothing more to wait for on its pidfd; the grace deadline wakes the node
        return True

    def _unwatch(self, run: runner.Run) -> None:
        if run.pidfd is not None:
            self.selector.unregister(run.pidfd)
            os.close(run.pidfd)
            run.pidfd = None
