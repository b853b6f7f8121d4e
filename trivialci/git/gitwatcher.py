"""The gitwatcher: a repository's branches, turned into events for the hub.

Every INTERVAL seconds it lists the branches of REPO (`git ls-remote --heads`),
compares them with what it saw last, and emits to the hub of SPOOL:

    branch_update {"repo": REPO, "branch": NAME, "old": SHA | null, "new": SHA}
                  a branch that is new (old is null) or points elsewhere
    branch_delete {"repo": REPO, "branch": NAME, "old": SHA}
                  a branch that is gone

REPO is the repository as given, a local path made absolute. What it saw last
is its state file, SPOOL/state/gitwatcher/KEY.json (KEY = sha1(REPO)[:16]):

    {"repo": REPO, "heads": {NAME: SHA, ...}}

written atomically once the events of a poll are delivered, so a crash in
between sends them again (at least once) and never loses one. The file is
disposable: without it, every branch is new again.

Branch names come from whoever can push: a name that `check_branch` refuses
is logged and never emitted. It is remembered like any other, so it is
logged again only when it changes.
"""

import json
import logging
import os
import select
import signal
from contextlib import contextmanager
from pathlib import Path

from ..spool.atomic import write_atomically
from ..spool.delivery import emit
from ..errors import BadInput, SpoolUnavailable, TrivialCiError
from .commands import check_branch, ls_remote_heads, repo_key, resolve_repo
from ..spool.layout import hub_dir
from ..spool.terminal import printable

log = logging.getLogger("trivialci")


class StopNow(BaseException):
    """A second stop signal: leave the poll under way (its git is killed) at once."""


class GitWatcher:
    """Polls one repository and emits its branch changes into one spool."""

    def __init__(self, spool, repo: str, interval: float = 5.0):
        self.hub = hub_dir(spool)
        self.repo = resolve_repo(repo)
        self.interval = interval
        self.state_path = self.hub.state / "gitwatcher" / f"{repo_key(self.repo)}.json"
        self.stopping = False
        self._failing: str | None = None

    def poll_once(self) -> list[Path]:
        """List the branches once, emit what changed since the state file, save it; the events delivered."""
        heads = ls_remote_heads(self.repo)
        return self._deliver(self.load_state(), heads)

    def _deliver(self, seen: dict[str, str], heads: dict[str, str]) -> list[Path]:
        """Emit each change; the state saved records exactly what was handled, even if an emit fails."""
        delivered, state = [], dict(seen)
        try:
            for branch, old, new in branch_changes(seen, heads):
                path = self._emit_change(branch, old, new)
                delivered += [path] if path else []
                _record(state, branch, new)
        finally:
            if state != seen:
                self.save_state(state)
        return delivered

    def _emit_change(self, branch: str, old: str | None, new: str | None) -> Path | None:
        try:
            check_branch(branch)
        except BadInput as error:
            log.warning("gitwatcher: skipping a branch of %s: %s; not emitted", self.repo, error)
            return None
        if new is None:
            event_type, payload = "branch_delete", {"repo": self.repo, "branch": branch, "old": old}
        else:
            event_type, payload = "branch_update", {"repo": self.repo, "branch": branch, "old": old, "new": new}
        path = emit(event_type, payload, to="hub", spool=self.hub.spool)
        log.info("gitwatcher: %s %s %s -> %s: %s", event_type, printable(branch), _short(old, "(new)"), _short(new, "(deleted)"),
                 path.name)
        return path

    def load_state(self) -> dict[str, str]:
        """The branches seen last; {} if there is no state file (or it is unreadable: then all are new)."""
        try:
            state = json.loads(self.state_path.read_bytes())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as error:
            log.warning("gitwatcher: cannot read %s (%s); every branch counts as new", self.state_path, error)
            return {}
        heads = state.get("heads") if isinstance(state, dict) else None
        if not isinstance(heads, dict) or not all(isinstance(v, str) for v in heads.values()):
            log.warning("gitwatcher: %s is not a gitwatcher state; every branch counts as new", self.state_path)
            return {}
        return heads

    def save_state(self, heads: dict[str, str]) -> None:
        body = json.dumps({"repo": self.repo, "heads": dict(sorted(heads.items()))}, indent=1) + "\n"
        try:
            self.state_path.parent.mkdir(parents=True, exist_ok=True)
            self.hub.tmp.mkdir(parents=True, exist_ok=True)
            write_atomically(self.state_path, body.encode(), self.hub.tmp)
        except OSError as error:
            raise SpoolUnavailable(f"cannot write {self.state_path}: {error.strerror or error} "
                                   "(the events were delivered; they will be sent again)") from None

    def serve(self, once: bool = False) -> None:
        """Poll every `interval` seconds until SIGTERM or SIGINT (or once, errors raised)."""
        if once:
            log.info("gitwatcher: polling %s once; state in %s", self.repo, self.state_path)
            self.poll_once()
            return
        log.info("gitwatcher: watching %s every %g s; state in %s", self.repo, self.interval, self.state_path)
        with self._stop_signals() as wake:
            try:
                while not self.stopping:
                    self._poll_and_carry_on()
                    _wait(wake, self.interval)
            except StopNow:
                pass
        log.info("gitwatcher: stopped")

    def _poll_and_carry_on(self) -> None:
        """One poll; an error is logged (once while it lasts) and the next poll tries again."""
        try:
            self.poll_once()
        except TrivialCiError as error:
            if str(error) != self._failing:
                log.warning("gitwatcher: %s; trying again every %g s", error, self.interval)
            self._failing = str(error)
            return
        except Exception:
            log.exception("gitwatcher: error in a poll; carrying on")
            return
        if self._failing:
            log.info("gitwatcher: polling %s works again", self.repo)
            self._failing = None

    @contextmanager
    def _stop_signals(self):
        """SIGTERM/SIGINT: stop after the poll under way; a second one stops at once. Yields the wake-up pipe."""
        wake_read, wake_write = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)

        def on_signal(signum, frame):
            if self.stopping:
                raise StopNow()
            log.info("gitwatcher: %s received; stopping", signal.Signals(signum).name)
            self.stopping = True
            os.write(wake_write, b"x")

        previous = {signum: signal.signal(signum, on_signal) for signum in (signal.SIGTERM, signal.SIGINT)}
        try:
            yield wake_read
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
            os.close(wake_read)
            os.close(wake_write)


def branch_changes(seen: dict[str, str], heads: dict[str, str]) -> list[tuple[str, str | None, str | None]]:
    """(branch, old, new) for each branch that is new, moved (old/new are shas) or gone (new is None), by name."""
    names = sorted(set(seen) | set(heads))
    return [(name, seen.get(name), heads.get(name)) for name in names if seen.get(name) != heads.get(name)]


def _record(state: dict[str, str], branch: str, new: str | None) -> None:
    if new is None:
        state.pop(branch, None)
    else:
        state[branch] = new


def _wait(wake_fd: int, seconds: float) -> None:
    """Sleep `seconds`, or less if a stop signal wrote to the wake-up pipe."""
    readable, _, _ = select.select([wake_fd], [], [], seconds)
    if readable:
        os.read(wake_fd, 64)


def _short(sha: str | None, missing: str) -> str:
    return sha[:12] if sha else missing
