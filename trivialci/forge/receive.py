"""One webhook delivery, from its headers and raw body to an event file in the hub's inbox.

The steps, each a refusal with its HTTP status when it fails:

    1. the forge is one of github, gitea, gitlab (the path /hooks/NAME)      404
    2. the body is JSON (Content-Type application/json)                     415
    3. it is signed with the hub's secret, checked before anything is parsed 401 (no signature), 403 (wrong)
    4. a ping is answered                                                    200
    5. a delivery acted on before is answered and not acted on again         200
    6. the body is a JSON object, the event one that asks for a build        400; 200 "ignored: ..."
    7. every field the flow needs passes its grammar (forge/hooks.py)        400
    8. the repository is one given with --repo (forge/repos.py)              404, 409
    9. the event is delivered atomically into the hub's inbox                202 (503 if it cannot be)

The event: branch_update, branch_delete, tag_update or pull_request, with the
fields of its Hook (hooks.py) plus "repo" (the --repo it matched), "forge",
"forge_repo" (OWNER/NAME) and "delivery" (the forge's delivery id, if any).
"""

from dataclasses import dataclass

from ..errors import TrivialCiError
from ..spool.delivery import emit
from ..spool.layout import hub_dir
from . import hooks
from .deliveries import Deliveries, delivery_key
from .hooks import Ignored, Refusal
from .registry import FORGES
from .repos import ConfiguredRepos, remember_forge

JSON_TYPES = ("application/json",)


@dataclass(frozen=True)
class Answer:
    status: int
    text: str
    event: str | None = None  # the event type delivered, if one was


class Receiver:
    """Turns deliveries into events for the hub of `spool`; the secret is kept here and nowhere else."""

    def __init__(self, spool, secret: str, repos: list[str]):
        if not secret:
            raise ValueError("a webhook secret is needed")
        self.spool = spool
        self._secret = secret
        self.repos = ConfiguredRepos(repos)
        self.deliveries = Deliveries(hub_dir(spool).state / "webhooks" / "deliveries")

    def __repr__(self) -> str:
        return f"Receiver({self.spool!r}, {len(self.repos.repos)} repositories)"  # never the secret

    def receive(self, forge_name: str, headers, body: bytes) -> Answer:
        try:
            return self._receive(forge_name, headers, body)
        except Refusal as refusal:
            return Answer(refusal.status, str(refusal))

    def _receive(self, forge_name: str, headers, body: bytes) -> Answer:
        forge = FORGES.get(forge_name)
        if forge is None:
            raise Refusal(404, f"no forge {forge_name[:40]!r}: POST to /hooks/github, /hooks/gitea or /hooks/gitlab")
        check_content_type(headers.get("Content-Type"))
        forge.verify(headers, body, self._secret)
        event = forge.event_name(headers)
        if forge.is_ping(event):
            return Answer(200, "pong: the signature is right; send push and pull request events")
        key = delivery_key(forge.NAME, event, forge.delivery_id(headers), body)
        if self.deliveries.seen(key):
            return Answer(200, "already received: this delivery was acted on before")
        reduced = forge.reduce(event, hooks.json_object(body))
        if isinstance(reduced, Ignored):
            return Answer(200, f"ignored: {reduced.reason}")
        return self._deliver(forge.NAME, reduced, key, forge.delivery_id(headers))

    def _deliver(self, forge: str, hook, key: str, delivery: str | None) -> Answer:
        repo = self.repos.match(hook)
        if not self.deliveries.take(key):
            return Answer(200, "already received: this delivery was acted on before")
        payload = {"repo": repo, **hook.fields, "forge": forge, "forge_repo": hook.full_name, "delivery": delivery}
        try:
            path = emit(hook.event, payload, to="hub", spool=self.spool)
        except (TrivialCiError, OSError) as error:
            self.deliveries.release(key)  # the forge's retry must not be taken for a repeat
            raise Refusal(503, f"the event could not be written to the hub's inbox: {error}") from None
        try:
            remember_forge(self.spool, repo, forge, hook.full_name)
        except OSError:
            pass  # only a poll-found push of this repository would miss its statuses
        return Answer(202, f"accepted: {hook.event} {_what(hook.fields)} -> inbox/{path.name}", hook.event)


def check_content_type(value: str | None) -> None:
    kind = (value or "").split(";")[0].strip().lower()
    if kind not in JSON_TYPES:
        raise Refusal(415, f"the content type is {kind or 'missing'!r}: set the webhook's content type to "
                           "application/json")


def _what(fields: dict) -> str:
    name = fields.get("branch") or fields.get("tag")
    sha = fields.get("new") or fields.get("old")
    return f"{name} {sha[:12]}" if sha else str(name)
