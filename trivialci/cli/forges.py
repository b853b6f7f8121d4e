"""The forge side of the command line: the webhook options of `hub` and `up`, and `trivialci approve`.

Secrets are never command-line values (a process list shows those): the
webhook's secret comes from TRIVIALCI_WEBHOOK_SECRET or --webhook-secret-file,
the API tokens from TRIVIALCI_{GITHUB,GITEA,GITLAB}_TOKEN. The hub reads them
once and removes them from its environment before its loop starts, so its
scripts, and the workers they boot, never see them.
"""

import contextlib
import getpass
import logging
import os
import stat
from pathlib import Path
from urllib.parse import urlsplit

import click

from .. import git
from ..errors import BadInput
from ..forge.receive import Receiver
from ..forge.registry import FORGES
from ..forge.sender import StatusSender, forge_settings
from ..hub.state import HubState
from ..jobs import JobStatus, is_job_id
from ..spool.delivery import SPOOL_ENV, emit
from ..web.webhook import WebhookServer, parse_address

log = logging.getLogger("trivialci")

SECRET_ENV = "TRIVIALCI_WEBHOOK_SECRET"
SECRET_NAMES = [SECRET_ENV] + [forge.TOKEN_ENV for forge in FORGES.values()]
MAX_SECRET_BYTES = 4096


def webhook_options(function):
    """--webhook, --webhook-secret-file and --public-url, as `hub` and `up` take them."""
    options = [
        click.option("--webhook", default=None, metavar="HOST:PORT",
                     help="Accept forge webhooks there: POST /hooks/github, /hooks/gitea, /hooks/gitlab "
                          f"(off unless given). The secret: ${SECRET_ENV} or --webhook-secret-file."),
        click.option("--webhook-secret-file", default=None, type=click.Path(dir_okay=False),
                     help=f"A file holding the webhooks' secret (instead of ${SECRET_ENV})."),
        click.option("--public-url", default=None, metavar="URL",
                     help="Where people reach the web UI (behind a proxy, say): commit statuses link to "
                          "URL/jobs/JOB [default: the UI's own address]."),
    ]
    for option in reversed(options):
        function = option(function)
    return function


def read_secret(secret_file, env=os.environ) -> str:
    """The webhooks' secret from the file, else the environment; BadInput when there is none."""
    if secret_file:
        return _secret_from_file(Path(secret_file))
    secret = (env.get(SECRET_ENV) or "").strip()
    if not secret:
        raise BadInput(f"--webhook needs a secret: set {SECRET_ENV} (the secret set in the forge's webhook "
                       "settings) or pass --webhook-secret-file FILE")
    return secret


def _secret_from_file(path: Path) -> str:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as error:
        raise BadInput(f"cannot read the webhook secret file {path}: {error.strerror}") from None
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise BadInput(f"the webhook secret file {path} is not a regular file")
        secret = handle.read(MAX_SECRET_BYTES + 1).decode("utf-8", "replace").strip()
    if not secret or len(secret) > MAX_SECRET_BYTES:
        raise BadInput(f"the webhook secret file {path} is empty or longer than {MAX_SECRET_BYTES} bytes")
    if info.st_mode & 0o077:
        log.warning("hub: the webhook secret file %s can be read by others (chmod 600 it)", path)
    return secret


def check_public_url(url: str | None) -> str | None:
    if url is None:
        return None
    if not url.startswith(("http://", "https://")) or not url.isprintable() or " " in url or len(url) > 1024:
        raise BadInput(f"--public-url {url!r} is not an http(s) URL: write e.g. https://ci.example.com")
    return url.rstrip("/")


def start_forges(stack: contextlib.ExitStack, spool, options: dict, ui_url: str | None) -> dict:
    """Start what the forge options ask for (webhook endpoint, status sender); the hub's advertised fields.

    Pops the forge options from `options`, and the secrets from the environment (after reading them)."""
    webhook, secret_file = options.pop("webhook"), options.pop("webhook_secret_file")
    public_url, repos = check_public_url(options.pop("public_url")) or ui_url, options.pop("repo")
    secret = read_secret(secret_file) if webhook else None
    tokens, roots = forge_settings(os.environ)
    for name in SECRET_NAMES:
        os.environ.pop(name, None)
    advertise = {"public_url": public_url} if public_url else {}
    if tokens:
        stack.enter_context(StatusSender(spool, tokens, roots))
        advertise["forges"] = ",".join(sorted(tokens))
        log.info("hub: posting commit statuses to %s", ", ".join(f"{name} ({roots[name]})" for name in sorted(tokens)))
    if webhook:
        advertise["webhook_url"] = _serve_webhooks(stack, spool, webhook, secret, repos)
    return advertise


def _serve_webhooks(stack: contextlib.ExitStack, spool, address: str, secret: str, repos) -> str:
    if not repos:
        raise BadInput("--webhook needs the repositories to build: give each with --repo URL")
    resolved = [git.resolve_repo(repo) for repo in repos]
    server = stack.enter_context(WebhookServer(Receiver(spool, secret, resolved), *parse_address(address)))
    log.info("hub: webhooks at %s{github,gitea,gitlab} for %s", server.url, ", ".join(resolved))
    return server.url


def up_hub_arguments(repos: list[str], webhook, webhook_secret_file, public_url) -> tuple[list[str], str]:
    """The forge options `up` gives its hub, and the banner's line about webhooks; BadInput before anything starts."""
    public_url = check_public_url(public_url)
    arguments = ["--public-url", public_url] if public_url else []
    if not webhook:
        return arguments, ""
    read_secret(webhook_secret_file)  # no secret: say so now, not in the hub's log
    host, port = parse_address(webhook)
    arguments += ["--webhook", webhook, *(item for repo in repos for item in ("--repo", repo))]
    if webhook_secret_file:
        arguments += ["--webhook-secret-file", str(Path(webhook_secret_file).resolve())]
    base = f"{urlsplit(public_url).scheme}://{urlsplit(public_url).hostname}:{port}" if public_url else \
        f"http://{host}:{port}"
    return arguments, f"  webhook   {base}/hooks/github (or /hooks/gitea, /hooks/gitlab)\n"


@click.command()
@click.option("--spool", required=True, envvar=SPOOL_ENV, type=click.Path(file_okay=False),
              help=f"The spool tree of the hub. Env: {SPOOL_ENV}.")
@click.option("--sha", default=None, help="Approve only if the job is held for this commit (the one you looked at).")
@click.argument("job")
def approve(spool, sha, job):
    """Build a HELD job (a fork's pull request), for the commit it is held for only.

    A later push to the pull request holds a new job, which needs an approval of its own.
    """
    if not is_job_id(job):
        raise BadInput(f"{job!r} is not a job id (YYYYmmddTHHMMSSZ-xxxxxx): see `trivialci jobs`")
    if not os.path.isdir(os.path.join(spool, "inbox")):
        raise BadInput(f"no spool at {spool} (no inbox/): check the path, or start a hub there first")
    held = HubState(spool).job(job)
    if held is None or held.get("status") != JobStatus.HELD:
        state = "not in the hub's state" if held is None else f"{held.get('status')}, not HELD"
        raise BadInput(f"{job} is {state}: `trivialci jobs` lists the held jobs")
    if sha is not None and git.check_sha(sha) != held["sha"]:
        raise BadInput(f"{job} is held for {held['sha'][:12]}, not {sha[:12]}: the pull request moved on; "
                       "look at the commit it holds now")
    emit("approve", {"job": job, "sha": held["sha"], "by": _user()}, to="hub", spool=spool)
    origin = f" from {held['head_repo']}" if held.get("head_repo") else ""
    click.echo(f"approved {job}: {held['branch']} at {held['sha'][:12]}{origin}; the hub queues it")


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no name for this uid (a container)
        return f"uid {os.getuid()}"
