"""What the commands share: one-line errors, the common options, logging."""

import functools
import logging
import os
import sys
from pathlib import Path

import click

from ..errors import BadInput, TrivialCiError
from ..spool import permissions
from ..spool.delivery import SPOOL_ENV
from ..spool.terminal import PrintableFormatter, printable
from ..store import open_store
from ..store import STORE_ENV
from ..web.hosts import ALLOW_HOSTS_ENV
from ..worker import sandbox
from ..worker.secrets import SECRETS_ENV
from ..worker.secrets import check_directory as check_secrets_directory

log = logging.getLogger("trivialci")


class FriendlyGroup(click.Group):
    """Turns TrivialCiError and a bad argument into one line and its exit status, and a bug into a short note."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except TrivialCiError as error:
            raise _CliError(str(error), error.exit_code) from None
        except click.UsageError as error:  # click would add its usage lines: keep refusals one line
            raise _CliError(_usage_line(error), error.exit_code) from None
        except (click.exceptions.Exit, click.ClickException, click.Abort):
            raise
        except Exception as error:
            if os.environ.get("TRIVIALCI_DEBUG"):
                raise
            raise _CliError(f"unexpected error: {error!r}. This is a bug in TrivialCi; "
                            "run again with TRIVIALCI_DEBUG=1 to see where it happened.", 1) from None


def _usage_line(error: click.UsageError) -> str:
    command = error.ctx.command_path if error.ctx else "trivialci"
    return f"{error.format_message()} See `{command} --help`."


class _CliError(click.ClickException):
    def __init__(self, message: str, exit_code: int):
        super().__init__(printable(message))  # one line, whatever values the message quotes
        self.exit_code = exit_code


def default_pipeline() -> Path:
    """The pipeline that ships with TrivialCi (installed, or in a source checkout)."""
    package = Path(__file__).resolve().parent.parent
    for candidate in (package / "pipeline", package.parent / "pipeline"):
        if candidate.is_dir():
            return candidate
    return package / "pipeline"


def spool_option(function):
    return click.option("--spool", required=True, envvar=SPOOL_ENV, type=click.Path(file_okay=False),
                        help=f"The spool tree (a local directory or a shared mount). Env: {SPOOL_ENV}.")(function)


def allow_host_option(function):
    return click.option("--allow-host", "allow_hosts", multiple=True, metavar="NAME", envvar=ALLOW_HOSTS_ENV,
                        help="Also answer HTTP requests whose Host is NAME (repeatable; e.g. a reverse proxy's "
                             "name); loopback names, addresses and this host's name always are; * accepts any. "
                             f"Env: {ALLOW_HOSTS_ENV} (names separated by spaces or commas).")(function)


def store_option(function):
    return click.option("--store", envvar=STORE_ENV, metavar="URL",
                        help=f"The artifact store: file:///DIR, a directory or s3://BUCKET/PREFIX. "
                             f"Env: {STORE_ENV}.")(function)


def build_options(sandbox_modes: list[str]):
    """The options of the builds a worker runs: sandbox, network, secrets (worker/sandbox.py, worker/secrets.py)."""
    options = [
        click.option("--sandbox", "sandbox_mode", type=click.Choice(sandbox_modes), default=sandbox_modes[0],
                     show_default=True, envvar=sandbox.SANDBOX_ENV,
                     help="Run each build in a bubblewrap sandbox (docs/deploy.md, \"Trust model\"); off: as a "
                          "plain child, seeing and writing all the worker can. Env: TRIVIALCI_SANDBOX."),
        click.option("--build-network", type=click.Choice(["host", "none"]), default="host", show_default=True,
                     envvar=sandbox.NETWORK_ENV, help="none: builds get a network of their own, loopback only. "
                                                      "Env: TRIVIALCI_BUILD_NETWORK."),
        click.option("--secrets", default=None, envvar=SECRETS_ENV, type=click.Path(file_okay=False),
                     help="Directory of KIND.env files (KEY=VALUE lines) given to trusted builds of KIND as "
                          "environment variables, masked in their logs. Env: TRIVIALCI_SECRETS."),
    ]
    return lambda function: functools.reduce(lambda f, option: option(f), reversed(options), function)


def configure_builds(sandbox_mode: str, build_network: str, secrets) -> None:
    """Check the builds' sandbox and secrets before starting; the scripts (and booted workers) inherit them."""
    warning = sandbox.configure(sandbox_mode, build_network, secrets and check_secrets_directory(secrets))
    if warning:
        click.echo(f"trivialci: WARNING: {warning}", err=True)


def node_options(function):
    options = [
        click.option("--pipeline", default=None,
                     help="Directory of TYPE.py / TYPE scripts, or git+URL#BRANCH to run the scripts of a branch "
                          "(refreshed when it is pushed) [default: the pipeline shipped with TrivialCi]."),
        click.option("--jobs", default=1, show_default=True, type=click.IntRange(1, 256),
                     help="How many scripts may run at once."),
        click.option("--timeout", default=3600.0, show_default=True, type=click.FloatRange(min=0, min_open=True),
                     help="Seconds a script may run (an event's \"_timeout\" overrides it)."),
        click.option("--grace", default=5.0, show_default=True, type=click.FloatRange(min=0),
                     help="Seconds between SIGTERM and SIGKILL, and to let scripts finish on shutdown."),
        click.option("--max-attempts", default=3, show_default=True, type=click.IntRange(1, 100),
                     help="Attempts at an event interrupted by crashes before it goes to failed/."),
        click.option("--poll", default=None, type=click.FloatRange(min=0.01),
                     help="Poll the inbox every SECONDS instead of using inotify "
                          "[default: inotify, or 1 s polling on network and FUSE filesystems]."),
        click.option("--settle", default=1.0, show_default=True, type=click.FloatRange(min=0),
                     help="Seconds an unfinished-looking file must hold still before it is taken (when polling)."),
        click.option("--rescan", default=5.0, show_default=True, type=click.FloatRange(min=0.01),
                     help="With inotify, also rescan the inbox every SECONDS (notifications can be lost)."),
        click.option("--drain", is_flag=True,
                     help="Handle what is in the inbox, then exit (instead of running until SIGTERM)."),
        click.option("--heartbeat", default=5.0, show_default=True, type=click.FloatRange(min=0.05),
                     help="Seconds between heartbeats (hub.json / worker.json and the lock's mtime)."),
        click.option("--tick", default=None, type=click.FloatRange(min=0.1),
                     help="Drop a `tick` event into its own inbox every SECONDS (when the pipeline has a tick script)."),
        click.option("--store", default=None, envvar="TRIVIALCI_STORE",
                     help="Artifact store URL for the scripts (file://DIR or s3://BUCKET/PREFIX), as "
                          "TRIVIALCI_STORE. Env: TRIVIALCI_STORE."),
        click.option("--workdir", default=None, type=click.Path(file_okay=False),
                     help="This node's own disk (git mirrors, job checkouts), as TRIVIALCI_WORKDIR "
                          "[default: ~/.cache/trivialci/NODE]."),
        click.option("--fork-server/--no-fork-server", default=True, show_default=True, envvar="TRIVIALCI_FORK_SERVER",
                     help="Start TYPE.py scripts by forking a helper that has imported TrivialCi once (fast), "
                          "instead of a new interpreter each. Env: TRIVIALCI_FORK_SERVER=off."),
    ]
    for option in reversed(options):
        function = option(function)
    return function


class LevelFormatter(PrintableFormatter):
    """A warning or an error says so ("warning: ..."): `trivialci up` shows those lines on its console."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        line = super().formatMessage(record)
        if record.levelno < logging.WARNING:
            return line
        stamp, message = line[:23], line[24:]  # "YYYY-MM-DD HH:MM:SS.mmm" then the message
        return f"{stamp} {record.levelname.lower()}: {message}"


def setup_logging() -> None:
    if log.handlers:
        return  # already set up by this command
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(LevelFormatter("%(asctime)s.%(msecs)03d %(message)s", "%Y-%m-%d %H:%M:%S"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    watchdog_log = logging.getLogger("watchdog")  # e.g. "Inotify queue overflowed", in the node's format
    watchdog_log.addHandler(handler)
    watchdog_log.setLevel(logging.WARNING)


def existing_spool(spool) -> str:
    if not os.path.isdir(os.path.join(spool, "inbox")):
        raise BadInput(f"no spool at {spool} (no inbox/): check the path, or start a hub there first")
    return spool


def sharing_option(function):
    """--group: what the command creates is shared with a group instead of private to this user (permissions.py)."""
    @functools.wraps(function)
    def command(*args, group=None, **kwargs):
        permissions.restrict(group)
        return function(*args, **kwargs)

    return click.option("--group", envvar=permissions.GROUP_ENV, default=None, metavar="NAME",
                        help="Share what it creates with this group (umask 007, setgid spool, workdir and store) "
                             "instead of keeping it private to this user (umask 077). "
                             f"Env: {permissions.GROUP_ENV}.")(command)


def store_dir(url) -> Path | None:
    """The directory of a directory store, to share with --group; None for S3 or no store."""
    return None if not url or str(url).startswith("s3://") else open_store(url).root
