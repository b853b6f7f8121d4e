"""The hub's status sender: a thread of `trivialci hub` that posts what state/statuses/ holds.

It runs beside the hub's loop, never in it: the hub's scripts only queue
reports (outbox.py), so a forge that is slow or down holds up no event. Every
INTERVAL seconds a round takes the reports whose next try has come:

    posted                                   -> state/statuses/sent/KEY.json
    unreachable, timed out, 5xx, 408, 429    -> tried again after 0.5, 1, 2, 4 ... 300 s (a Retry-After
                                                the forge gives is honoured); after ATTEMPTS tries -> failed/
    any other answer (401, 404, 422, a redirect), no token or API root for the forge -> failed/ at once

A forge found unreachable is not tried again in the same round: a forge that
is down costs one timeout a round, not one per report. Every outcome but a
plain success is a line in the hub's log; tokens are never written anywhere.
"""

import logging
import threading
import time

from ..errors import BadInput
from .outbox import Outbox
from .registry import FORGES, forge_named
from .statuses import TIMEOUT, ApiError, check_api_root, post

log = logging.getLogger("trivialci")

INTERVAL = 0.5
ATTEMPTS = 15  # with the delays below: about an hour of trying
FIRST_DELAY, MAX_DELAY = 0.5, 300.0
PRUNE_EVERY = 3600.0


def forge_settings(env) -> tuple[dict, dict]:
    """({forge: token}, {forge: API root}) for the forges whose token is set; BadInput for a root that is not one."""
    tokens, roots = {}, {}
    for name, module in FORGES.items():
        token = (env.get(module.TOKEN_ENV) or "").strip()
        if not token:
            continue
        root = env.get(module.API_ENV) or module.DEFAULT_API
        if not root:
            raise BadInput(f"{module.TOKEN_ENV} is set but {module.API_ENV} is not: set it to the API's root "
                           f"(e.g. {'https://HOST/api/v4' if name == 'gitlab' else 'https://HOST/api/v1'})")
        try:
            tokens[name], roots[name] = token, check_api_root(root, module.API_ENV)
        except ValueError as error:
            raise BadInput(str(error)) from None
    return tokens, roots


def delay_after(attempts: int) -> float:
    """Seconds to wait after the `attempts`-th failed try."""
    return min(MAX_DELAY, FIRST_DELAY * 2 ** max(0, attempts - 1))


class StatusSender:
    """Posts queued reports in a daemon thread; `run_once()` is one round (tests call it directly)."""

    def __init__(self, spool, tokens: dict, roots: dict, interval: float = INTERVAL, attempts: int = ATTEMPTS,
                 timeout: float = TIMEOUT):
        self.outbox = Outbox(spool)
        self.tokens, self.roots = dict(tokens), dict(roots)
        self.interval, self.attempts, self.timeout = interval, attempts, timeout
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="trivialci-statuses", daemon=True)
        self._pruned = 0.0

    def start(self) -> "StatusSender":
        self._thread.start()
        return self

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.close()

    def _serve(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.run_once()
            except Exception:  # a round that fails must not end the thread: the next one tries again
                log.exception("statuses: a round of the status sender failed")

    def run_once(self, now: float | None = None) -> int:
        """Post every due report once; how many were posted."""
        now = time.time() if now is None else now
        if now - self._pruned > PRUNE_EVERY:
            self.outbox.prune(now)
            self._pruned = now
        down, posted = set(), 0
        for key, entry in self.outbox.due(now):
            if self._stop.is_set():
                break
            if entry.get("forge") in down:
                continue
            posted += self._send(key, entry, down)
        return posted

    def _send(self, key: str, entry: dict, down: set) -> int:
        shown = f"{entry.get('forge')} {entry.get('forge_repo')}@{str(entry.get('sha'))[:12]} {entry.get('context')}"
        try:
            post(self._request(entry), self.timeout)
        except ApiError as error:
            if error.unreachable:
                down.add(entry.get("forge"))
            return self._failed(key, entry, shown, error)
        except BadInput as error:
            return self._failed(key, entry, shown, ApiError(str(error), retry=False))
        self.outbox.sent(key, entry)
        log.info("statuses: %s %s (%s): posted", shown, entry.get("state"), entry.get("description"))
        return 1

    def _request(self, entry: dict):
        forge = forge_named(entry.get("forge"))
        if forge.NAME not in self.tokens:
            raise BadInput(f"no {forge.TOKEN_ENV} in the hub's environment: the status was not posted")
        return forge.status_request(self.roots[forge.NAME], self.tokens[forge.NAME], entry)

    def _failed(self, key: str, entry: dict, shown: str, error: ApiError) -> int:
        attempts = entry.get("attempts", 0) + 1
        if error.retry and attempts < self.attempts:
            delay = max(delay_after(attempts), min(error.after or 0, MAX_DELAY))
            self.outbox.retry(key, entry, str(error), delay)
            log.warning("statuses: %s %s: %s; trying again in %g s", shown, entry.get("state"), error, delay)
        else:
            tries = f" after {attempts} tries" if error.retry else ""
            self.outbox.give_up(key, entry, f"{error}{tries}")
            log.warning("statuses: %s %s given up%s: %s (state/statuses/failed/%s.json)", shown,
                        entry.get("state"), tries, error, key)
        return 0
