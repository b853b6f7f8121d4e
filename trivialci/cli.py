"""The command line: `trivialci hub|worker|emit|status`.

Only this module imports click. Errors reach the user as one line on stderr
and an exit status (docs/protocol.md, "Exit statuses"); a traceback is shown
only for a bug, and only with TRIVIALCI_DEBUG=1.
"""

import json
import logging
import os
import socket
import sys
from pathlib import Path

import click

from . import __version__
from .delivery import SPOOL_ENV, emit
from .errors import BadInput, TrivialCiError
from .event import parse_payload_text
from .layout import check_node_name, hub_dir, worker_dir
from .node import Node, NodeConfig
from .status import format_status, spool_status

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
        super().__init__(message)
        self.exit_code = exit_code


def default_pipeline() -> Path:
    """The pipeline that ships with TrivialCi (installed, or in a source checkout)."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "pipeline", here.parent / "pipeline"):
        if candidate.is_dir():
            return candidate
    return here / "pipeline"


def spool_option(function):
    return click.option("--spool", required=True, envvar=SPOOL_ENV, type=click.Path(file_okay=False),
                        help=f"The spool tree (a local directory or a shared mount). Env: {SPOOL_ENV}.")(function)


def node_options(function):
    options = [
        click.option("--pipeline", type=click.Path(file_okay=False), default=None,
                     help="Directory of TYPE.py / TYPE scripts [default: the pipeline shipped with TrivialCi]."),
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
    ]
    for option in reversed(options):
        function = option(function)
    return function


@click.group(cls=FriendlyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="trivialci")
def cli():
    """TrivialCi: the CI without features. Events are JSON files; scripts handle them.

    \b
    trivialci hub --spool /var/ci                  run the hub's loop
    trivialci worker --spool /mnt/ci --name w1     run a worker's loop
    trivialci emit hello '{"x": 1}' --spool /var/ci
    trivialci status --spool /var/ci
    """


@cli.command()
@spool_option
@node_options
def hub(spool, **options):
    """Run the hub: handle events dropped into SPOOL/inbox/.

    Runs until SIGTERM or SIGINT (a second one skips the grace period).
    """
    run_node(hub_dir(spool), options, advertise={})


@cli.command()
@spool_option
@click.option("--name", default=lambda: _default_worker_name(), show_default="this host's name",
              help="The worker's name: its directory is SPOOL/workers/NAME/.")
@click.option("--kind", default="build", show_default=True, help="The kind of work it does (advertised to scripts).")
@node_options
def worker(spool, name, kind, **options):
    """Run a worker: the same loop on SPOOL/workers/NAME/, with worker.json as its heartbeat."""
    check_node_name(name)
    run_node(worker_dir(spool, name), options, advertise={"kind": kind, "worker": name})


@cli.command("emit")
@click.argument("event_type", metavar="TYPE")
@click.argument("payload", default="{}", metavar="[JSON|@FILE|-]")
@spool_option
@click.option("--to", default="hub", show_default=True, help="hub, worker:NAME, or a node directory.")
def emit_command(event_type, payload, spool, to):
    """Deliver an event atomically; print the path it was delivered to.

    The payload is a JSON object given as text, read from @FILE, or from - (stdin).
    """
    delivered = emit(event_type, parse_payload_text(_payload_text(payload)), to=to, spool=spool)
    click.echo(delivered)


@cli.command()
@spool_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def status(spool, as_json):
    """Show each node of the spool: heartbeat, inbox, running events, today's counts."""
    if not os.path.isdir(spool):
        raise BadInput(f"no spool at {spool}: check the path, or start a hub there with `trivialci hub --spool {spool}`")
    summary = spool_status(spool)
    click.echo(json.dumps(summary, indent=2) if as_json else format_status(summary))


def run_node(node_dir, options, advertise: dict) -> None:
    _setup_logging()
    config = NodeConfig(
        pipeline=_pipeline_dir(options["pipeline"]),
        jobs=options["jobs"], timeout=options["timeout"], grace=options["grace"],
        max_attempts=options["max_attempts"], poll=options["poll"], settle=options["settle"], rescan=options["rescan"],
        advertise=advertise,
    )
    with Node(node_dir, config) as node:
        log.info("%s: handling %s with scripts from %s (%d at a time)", node_dir.node, node_dir.inbox,
                 config.pipeline, config.jobs)
        node.serve(until_idle=options["drain"])
    log.info("%s: stopped", node_dir.node)


def _pipeline_dir(given) -> Path:
    pipeline = Path(given).resolve() if given else default_pipeline()
    if not pipeline.is_dir():
        raise BadInput(f"no pipeline directory at {pipeline}: pass --pipeline DIR with your TYPE.py scripts")
    return pipeline


def _payload_text(payload: str) -> str:
    if payload == "-":
        return sys.stdin.read()
    if payload.startswith("@"):
        try:
            return Path(payload[1:]).read_text()
        except OSError as error:
            raise BadInput(f"cannot read the payload file {payload[1:]}: {error.strerror}") from None
    return payload


def _default_worker_name() -> str:
    host = socket.gethostname().split(".")[0]
    return "".join(c if (c.isascii() and c.isalnum()) or c in "_-" else "-" for c in host)[:63].strip("-_") or "worker"


def _setup_logging() -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s.%(msecs)03d %(message)s", "%Y-%m-%d %H:%M:%S"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    watchdog_log = logging.getLogger("watchdog")  # e.g. "Inotify queue overflowed", in the node's format
    watchdog_log.addHandler(handler)
    watchdog_log.setLevel(logging.WARNING)


def main() -> None:
    cli(prog_name="trivialci")
