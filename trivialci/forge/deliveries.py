"""Deliveries already acted on: one empty file each, SPOOL/state/webhooks/deliveries/KEY.

KEY is sha256(forge, event, delivery id)[:40]; the delivery id is the
forge's (X-GitHub-Delivery, X-Gitea-Delivery, GitLab's Idempotency-Key or
X-Gitlab-Event-UUID), or the body's sha256 when it sends none. The event's
name is part of the key because GitLab gives the hooks one action triggered
(a push, and the merge request it updated) the same X-Gitlab-Event-UUID.

A key is taken with O_CREAT|O_EXCL, so of two deliveries of one event that
arrive at once exactly one is acted on. A key is released again when its
event could not be written, so that the forge's retry is not lost. Keys older
than KEEP_DAYS are removed (forges redeliver within days, by hand or on their own).
"""

import hashlib
import os
import time
from pathlib import Path

KEEP_DAYS = 7
PRUNE_EVERY = 3600.0


def delivery_key(forge: str, event: str, delivery: str | None, body: bytes) -> str:
    identity = delivery or "body:" + hashlib.sha256(body).hexdigest()
    return hashlib.sha256(f"{forge}\0{event}\0{identity}".encode("utf-8", "surrogateescape")).hexdigest()[:40]


class Deliveries:
    def __init__(self, root):
        self.root = Path(root)
        self._pruned = 0.0

    def seen(self, key: str) -> bool:
        return os.path.lexists(self.root / key)

    def take(self, key: str) -> bool:
        """True for the first taker of `key`, False when it was taken before."""
        self.root.mkdir(parents=True, exist_ok=True)
        try:
            os.close(os.open(self.root / key, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                             0o644))
        except FileExistsError:
            return False
        self._prune_now_and_then()
        return True

    def release(self, key: str) -> None:
        try:
            os.unlink(self.root / key)
        except FileNotFoundError:
            pass

    def _prune_now_and_then(self) -> None:
        now = time.time()
        if now - self._pruned < PRUNE_EVERY:
            return
        self._pruned = now
        for entry in os.scandir(self.root):
            try:
                if now - entry.stat(follow_symlinks=False).st_mtime > KEEP_DAYS * 86400:
                    os.unlink(entry.path)
            except OSError:
                pass
