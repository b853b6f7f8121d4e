"""The command line: `trivialci up|hub|worker|gitwatcher|emit|status|jobs|build|cancel|history|prune|state`.

Only this module imports click. Errors reach the user as one line on stderr
and an exit status (docs/protocol.md, "Exit statuses"); a traceback is shown
only for a bug, and only with TRIVIALCI_DEBUG=1.
"""

import dataclasses
import json
import logging
import os
import socket
import sys
from pathlib import Path

import click

from . import __version__
from .spool.delivery import SPOOL_ENV, emit
from .errors import BadInput, TrivialCiError
from .spool.event import parse_payload_text
from .store.history import format_job_record, format_job_table, job_log, list_jobs, show_job
from .git.gitwatcher import GitWatcher
from .spool.layout import check_node_name, hub_dir, worker_dir
from .spool.node import Node, NodeConfig
from .spool.status import format_status, spool_status
from .store import STORE_ENV, open_store
from . import git
from .spool import mounts
from .hub import pipelinesource, requests, retention, verify
from .web import ui as webui
from . import up as up_tree
from .hub.state import HubState
from .jobs import is_job_id
from .hub.jobview import format_jobs, jobs_summary
from .web.logserver import LogServer, parse_listen
from .worker import limits as worker_limits

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
    ]
    for option in reversed(options):
        function = option(function)
    return function


@click.group(cls=FriendlyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="trivialci")
def cli():
    """TrivialCi: the CI without features. Events are JSON files; scripts handle them.

    \b
    trivialci up --repo .                          the whole CI for one repository, here
    trivialci hub --spool /var/ci                  run the hub's loop
    trivialci worker --spool /mnt/ci --name w1     run a worker's loop
    trivialci gitwatcher --spool /var/ci --repo URL
    trivialci emit hello '{"x": 1}' --spool /var/ci
    trivialci status --spool /var/ci               nodes, inboxes, running events
    trivialci jobs --spool /var/ci                 queue, running jobs, last results
    trivialci build --repo URL --branch main --wait
    trivialci cancel JOB --spool /var/ci
    trivialci history list --store file:///srv/ci-store
    trivialci prune --spool /var/ci --store file:///srv/ci-store --dry-run
    """


@cli.command()
@spool_option
@node_options
@click.option("--ui", default=None, metavar="HOST:PORT",
              help="Serve the read-only web UI there (127.0.0.1:0 picks a free port); its URL goes into hub.json.")
def hub(spool, ui, **options):
    """Run the hub: handle events dropped into SPOOL/inbox/.

    Runs until SIGTERM or SIGINT (a second one skips the grace period).
    """
    if not ui:
        return run_node(hub_dir(spool), options, advertise={})
    store = open_store(options["store"]) if options["store"] else None
    with webui.WebUI(spool, store, *webui.parse_address(ui)) as server:
        _setup_logging()
        log.info("hub: web UI at %s", server.url)
        run_node(hub_dir(spool), options, advertise={"ui_url": server.url})


@cli.command()
@spool_option
@click.option("--name", default=lambda: _default_worker_name(), show_default="this host's name",
              help="The worker's name: its directory is SPOOL/workers/NAME/.")
@click.option("--kind", default="build", show_default=True, help="The kind of work it does (advertised to scripts).")
@click.option("--log-listen", default="127.0.0.1:0", show_default=True,
              help="Serve the jobs' live logs on HOST:PORT (port 0: a free one), advertised as log_url; `off`: none.")
@click.option("--hub-ui", default=None, envvar="TRIVIALCI_HUB_UI",
              help="The hub's web UI, where the log server sends requests for logs it no longer has. "
                   "Env: TRIVIALCI_HUB_UI.")
@click.option("--outbox", "outbox_mode", type=click.Choice(["auto", "always", "never"]), default="auto",
              show_default=True, envvar="TRIVIALCI_WORKER_OUTBOX",
              help="Keep what the scripts send the hub, and their logs while they run, on the worker's own disk "
                   "(WORKDIR/outbox, WORKDIR/event-logs) until the spool takes them; auto: when the spool is on a "
                   "network or FUSE mount, which can go away. Env: TRIVIALCI_WORKER_OUTBOX.")
@click.option("--max-log-bytes", default="50M", show_default=True, envvar="TRIVIALCI_MAX_LOG_BYTES",
              help="Cut a job's log there (K, M, G suffixes). Env: TRIVIALCI_MAX_LOG_BYTES.")
@click.option("--max-artifact-bytes", default="1G", show_default=True, envvar="TRIVIALCI_MAX_ARTIFACT_BYTES",
              help="Refuse a job's artifacts over this, together. Env: TRIVIALCI_MAX_ARTIFACT_BYTES.")
@node_options
def worker(spool, name, kind, log_listen, hub_ui, outbox_mode, max_log_bytes, max_artifact_bytes, **options):
    """Run a worker: the same loop on SPOOL/workers/NAME/, with worker.json as its heartbeat."""
    check_node_name(name)
    listen, advertise = parse_listen(log_listen), {"kind": kind, "worker": name, **worker_limits.advertised(
        max_log_bytes, max_artifact_bytes)}
    workdir = Path(_workdir(options["workdir"], name))
    node_dir, outbox = worker_dir(spool, name), None
    if outbox_mode == "always" or (outbox_mode == "auto" and mounts.sees_other_machines(mounts.filesystem_type(spool))):
        # On its own disk: its scripts' logs while they run, and what they send the hub until the hub has it.
        node_dir, outbox = dataclasses.replace(node_dir, running_logs=workdir / "event-logs"), workdir / "outbox"
    if listen is None:
        return run_node(node_dir, options, advertise=advertise, announce="worker_started", outbox=outbox)
    logs = workdir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    with LogServer(logs, *listen, hub_ui=hub_ui) as log_server:
        run_node(node_dir, options, advertise={**advertise, "log_url": log_server.url}, announce="worker_started",
                 outbox=outbox)


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


@cli.command()
@spool_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.option("--store", envvar=STORE_ENV, default=None, help="Read older results from this artifact store too.")
def jobs(spool, as_json, store):
    """Show the queue, what runs on which worker, and the last results (from the hub's state/, then the store)."""
    summary = jobs_summary(HubState(_existing_spool(spool)), store=open_store(store) if store else None)
    click.echo(json.dumps(summary, indent=2) if as_json else format_jobs(summary))


@cli.command()
@spool_option
@click.option("--repo", required=True, help="The repository (a path or URL), as the gitwatcher names it.")
@click.option("--branch", required=True, help="The branch to build (its current head).")
@click.option("--wait", is_flag=True, help="Wait for the jobs; exit 0 if all PASSED, 1 if not.")
@click.option("--timeout", default=3600.0, show_default=True, type=click.FloatRange(min=0, min_open=True),
              help="With --wait: give up after SECONDS (exit 1).")
def build(spool, repo, branch, wait, timeout):
    """Ask the hub to build a branch now, as if it had just been pushed."""
    request = requests.request_build(spool, git.resolve_repo(repo), git.check_branch(branch))
    click.echo(f"requested {request['request']}: {branch} at {request['new'][:12]}")
    if wait:
        sys.exit(requests.wait_for_request(spool, request["request"], timeout, click.echo))


@cli.command()
@spool_option
@click.argument("job")
def cancel(spool, job):
    """Cancel a job: dropped if queued, stopped on its worker if running."""
    if not is_job_id(job):
        raise BadInput(f"{job!r} is not a job id (YYYYmmddTHHMMSSZ-xxxxxx): see `trivialci jobs`")
    click.echo(emit("cancel", {"job": job}, to="hub", spool=_existing_spool(spool)))


@cli.command()
@click.option("--repo", required=True, help="The repository to watch and build (a path or URL).")
@click.option("--spool", default=None, type=click.Path(file_okay=False), help="[default: ~/.local/share/trivialci/spool]")
@click.option("--store", default=None, help="[default: file://~/.local/share/trivialci/store]")
@click.option("--workdir", default=None, type=click.Path(file_okay=False), help="[default: ~/.cache/trivialci]")
@click.option("--pipeline", type=click.Path(file_okay=False), default=None, help="[default: the shipped pipeline]")
@click.option("--ui", default="127.0.0.1:8080", show_default=True, metavar="HOST:PORT|off",
              help="Where the hub serves its web UI (a free port if that one is taken); off: no web UI.")
def up(repo, spool, store, workdir, pipeline, ui):
    """Run the whole CI for one repository here: hub, gitwatcher, workers. Ctrl-C stops it all."""
    defaults = up_tree.default_paths()
    spool, store = Path(spool or defaults["spool"]).resolve(), store or defaults["store"]
    workdir = Path(workdir or defaults["workdir"]).resolve()
    repo = git.resolve_repo(repo)
    ui = None if ui == "off" else webui.free_address(ui)
    shown_ui = f"  ui        http://{ui}/\n" if ui else ""
    click.echo(f"trivialci up: watching {repo}\n{shown_ui}  spool     {spool}\n  store     {store}\n  workdir   {workdir}\n"
               f"  jobs      trivialci jobs --spool {spool}\n"
               f"  history   trivialci history list --store {store}\nCtrl-C stops everything.", err=True)
    children = up_tree.start_tree(repo, spool, store, workdir, _pipeline_dir(pipeline), ui)
    try:
        status_code = up_tree.wait_for_signal(children)
    finally:
        up_tree.stop_tree(children, spool)
    sys.exit(status_code)


def _existing_spool(spool) -> str:
    if not os.path.isdir(os.path.join(spool, "inbox")):
        raise BadInput(f"no spool at {spool} (no inbox/): check the path, or start a hub there first")
    return spool


@cli.command()
@spool_option
@click.option("--repo", required=True, help="The repository to watch: a path or an https://, ssh://, file:// URL.")
@click.option("--interval", default=5.0, show_default=True, type=click.FloatRange(min=0.05),
              help="Seconds between two listings of its branches.")
@click.option("--once", is_flag=True, help="Poll once, emit what changed, and exit (instead of running until SIGTERM).")
def gitwatcher(spool, repo, interval, once):
    """Poll REPO's branches and emit branch_update / branch_delete to the hub for each change.

    What it saw last is SPOOL/state/gitwatcher/KEY.json; delete it and every
    branch is new again. Runs until SIGTERM or SIGINT.
    """
    _setup_logging()
    GitWatcher(spool, repo, interval).serve(once=once)

@cli.group()
def history():
    """Jobs from the artifact store alone (no hub needed): list, show, log."""


def store_option(function):
    return click.option("--store", envvar=STORE_ENV, metavar="URL",
                        help=f"The artifact store: file:///DIR, a directory or s3://BUCKET/PREFIX. "
                             f"Env: {STORE_ENV}.")(function)


@history.command("list")
@store_option
@click.option("--limit", default=20, show_default=True, type=click.IntRange(min=1), help="Show the newest N jobs.")
@click.option("--branch", default=None, help="Only jobs of this branch.")
def history_list(store, limit, branch):
    """The newest jobs, newest first (reads only the records it shows)."""
    opened = open_store(store)
    jobs_found = list_jobs(opened, limit, branch)
    of_branch = f" of branch {branch}" if branch else ""
    click.echo(format_job_table(jobs_found) if jobs_found else f"no jobs{of_branch} in {opened.url}")


@history.command("show")
@click.argument("job")
@store_option
@click.option("--json", "as_json", is_flag=True, help="Print the job's job.json as it is stored.")
def history_show(job, store, as_json):
    """A job's record: branch, sha, status, times, exit code, files."""
    record = show_job(open_store(store), job)
    click.echo(json.dumps(record, indent=2) if as_json else format_job_record(record))


@history.command("log")
@click.argument("job")
@store_option
def history_log(job, store):
    """A job's output (its log.txt), as it was written."""
    click.echo(job_log(open_store(store), job), nl=False)


@cli.command("prune")
@spool_option
@click.option("--store", envvar=STORE_ENV, default=None, metavar="URL",
              help=f"The artifact store whose old jobs go (without it only the spool is pruned). Env: {STORE_ENV}.")
@click.option("--keep-days", default=30, show_default=True, type=click.IntRange(min=1),
              help="Keep finished jobs and done/ days younger than this.")
@click.option("--keep-last", default=20, show_default=True, type=click.IntRange(min=0),
              help="Keep the newest N jobs of each (repository, branch, kind), however old.")
@click.option("--keep-failed-days", default=90, show_default=True, type=click.IntRange(min=1),
              help="Keep failed/ days younger than this (at least --keep-days).")
@click.option("--dry-run", is_flag=True, help="Print what would go and the bytes it would free; change nothing.")
def prune_command(spool, store, keep_days, keep_last, keep_failed_days, dry_run):
    """Remove what the retention policy lets go (docs/protocol.md, "Retention"); print what went."""
    policy = retention.RetentionPolicy(keep_days, keep_last, keep_failed_days)
    plan = retention.prune(_existing_spool(spool), store, policy, dry_run=dry_run)
    click.echo("\n".join(plan.lines(done=not dry_run)))


state_group = cli.group("state", help="The hub's state/, derived from its event log.")(lambda: None)


@state_group.command("verify")
@spool_option
def state_verify(spool):
    """Rebuild state/ into a temporary directory and print how the live one differs (exit 1 if it does)."""
    sys.exit(verify.verify_command(_existing_spool(spool), click.echo))


def run_node(node_dir, options, advertise: dict, announce: str | None = None, outbox: Path | None = None) -> None:
    _setup_logging()
    advertise = {**advertise, "workdir": _workdir(options["workdir"], node_dir.node)}
    if options["store"]:
        advertise["store"] = options["store"]
    if pipelinesource.is_source(options["pipeline"]):
        advertise["pipeline_source"] = options["pipeline"]
        options["pipeline"] = str(pipelinesource.refresh(advertise["workdir"], options["pipeline"]))
    config = NodeConfig(
        pipeline=_pipeline_dir(options["pipeline"]), announce=announce, tick=options["tick"],
        heartbeat=options["heartbeat"],
        jobs=options["jobs"], timeout=options["timeout"], grace=options["grace"],
        max_attempts=options["max_attempts"], poll=options["poll"], settle=options["settle"], rescan=options["rescan"],
        advertise=advertise, outbox=outbox,
    )
    node = Node(node_dir, config)
    with node.stop_signals(), node:
        log.info("%s: handling %s with scripts from %s (%d at a time)", node_dir.node, node_dir.inbox,
                 config.pipeline, config.jobs)
        if not node_dir.is_hub and not hub_dir(node_dir.spool).inbox.is_dir():
            log.warning("%s: %s has no inbox/ of a hub yet: start the hub first, or check that the hub's spool is "
                        "mounted there (a worker on an empty mount point would wait forever)", node_dir.node,
                        node_dir.spool)
        node.serve(until_idle=options["drain"])
    log.info("%s: stopped", node_dir.node)


def _workdir(given, node: str) -> str:
    if given:
        return str(Path(given).resolve())
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(cache, "trivialci", node)


def _pipeline_dir(given) -> Path:
    pipeline = Path(os.path.abspath(given)) if given else default_pipeline()  # a `current` link stays a link
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
    if log.handlers:
        return  # already set up by this command
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s.%(msecs)03d %(message)s", "%Y-%m-%d %H:%M:%S"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    watchdog_log = logging.getLogger("watchdog")  # e.g. "Inotify queue overflowed", in the node's format
    watchdog_log.addHandler(handler)
    watchdog_log.setLevel(logging.WARNING)


def main() -> None:
    cli(prog_name="trivialci")
