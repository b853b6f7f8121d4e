"""The commands that run a part of the CI: `hub`, `worker`, `gitwatcher`, and `up` for all of them."""

import contextlib
import dataclasses
import functools
import logging
import os
import socket
import sys
from pathlib import Path

import click

from .. import git
from ..errors import BadInput
from ..git.gitwatcher import GitWatcher
from ..git.workingcopy import pipeline_warnings
from ..hub import pipelinesource
from ..jobs import check_kind
from ..spool import mounts
from ..spool.layout import check_node_name, hub_dir, worker_dir
from ..spool.node import Node, NodeConfig
from ..store import open_store
from .. import up as up_tree
from ..web import ui as webui
from ..web.hosts import allowed_names
from ..web.logserver import LogServer, parse_listen
from ..worker import limits as worker_limits
from ..spool import permissions
from . import forges, upconsole
from .options import (allow_host_option, build_options, configure_builds, default_pipeline, node_options,
                      setup_logging, sharing_option, spool_option, store_dir)

log = logging.getLogger("trivialci")


@click.command()
@sharing_option
@spool_option
@node_options
@click.option("--ui", default=None, metavar="HOST:PORT",
              help="Serve the read-only web UI there (127.0.0.1:0 picks a free port); its URL goes into hub.json.")
@allow_host_option
@forges.webhook_options
@click.option("--repo", multiple=True, help="With --webhook: a repository whose webhooks are built (several times).")
def hub(spool, ui, allow_hosts, **options):
    """Run the hub: handle events dropped into SPOOL/inbox/.

    Runs until SIGTERM or SIGINT (a second one skips the grace period).
    """
    permissions.share_roots(spool, _workdir(options["workdir"], "hub"), store_dir(options["store"]))
    allowed = allowed_names(allow_hosts)  # checked even without --ui: a mistake is said at once
    setup_logging()
    with contextlib.ExitStack() as servers:
        advertise = {}
        if ui:
            store = open_store(options["store"]) if options["store"] else None
            advertise["ui_url"] = servers.enter_context(webui.WebUI(spool, store, *webui.parse_address(ui),
                                                                    allow_hosts=allowed)).url
            log.info("hub: web UI at %s", advertise["ui_url"])
        advertise.update(forges.start_forges(servers, spool, options, advertise.get("ui_url")))
        run_node(hub_dir(spool), options, advertise=advertise)


@click.command()
@sharing_option
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
@build_options(["on", "off"])
@allow_host_option
@node_options
def worker(spool, name, kind, log_listen, hub_ui, outbox_mode, max_log_bytes, max_artifact_bytes, sandbox_mode,
           build_network, secrets, allow_hosts, **options):
    """Run a worker: the same loop on SPOOL/workers/NAME/, with worker.json as its heartbeat."""
    check_node_name(name), check_kind(kind)  # they name its directory, and its builds' .trivialci/KIND
    allowed = allowed_names(allow_hosts)
    configure_builds(sandbox_mode, build_network, secrets)
    listen, advertise = parse_listen(log_listen), {"kind": kind, "worker": name, **worker_limits.advertised(
        max_log_bytes, max_artifact_bytes)}
    workdir = Path(_workdir(options["workdir"], name))
    permissions.share_roots(workdir, store_dir(options["store"]))  # the spool is the hub's to share
    node_dir, outbox = worker_dir(spool, name), None
    if outbox_mode == "always" or (outbox_mode == "auto" and mounts.sees_other_machines(mounts.filesystem_type(spool))):
        # On its own disk: its scripts' logs while they run, and what they send the hub until the hub has it.
        node_dir, outbox = dataclasses.replace(node_dir, running_logs=workdir / "event-logs"), workdir / "outbox"
    if listen is None:
        return run_node(node_dir, options, advertise=advertise, announce="worker_started", outbox=outbox)
    logs = workdir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    with LogServer(logs, *listen, hub_ui=hub_ui, allow_hosts=allowed) as log_server:
        run_node(node_dir, options, advertise={**advertise, "log_url": log_server.url}, announce="worker_started",
                 outbox=outbox)


@click.command()
@sharing_option
@click.option("--repo", "repos", required=True, multiple=True,
              help="A repository to watch and build (a path or URL); give --repo again for more.")
@click.option("--spool", default=None, type=click.Path(file_okay=False), help="[default: ~/.local/share/trivialci/spool]")
@click.option("--store", default=None, help="[default: file://~/.local/share/trivialci/store]")
@click.option("--workdir", default=None, type=click.Path(file_okay=False), help="[default: ~/.cache/trivialci]")
@click.option("--pipeline", type=click.Path(file_okay=False), default=None, help="[default: the shipped pipeline]")
@click.option("--ui", default="127.0.0.1:8080", show_default=True, metavar="HOST:PORT|off",
              help="Where the hub serves its web UI (a free port if that one is taken); off: no web UI.")
@build_options(["auto", "on", "off"])
@allow_host_option
@forges.webhook_options
@click.option("--poll", default=None, type=click.FloatRange(min=0.05),
              help=f"Seconds between two listings of each repository's branches [default: {up_tree.WATCH_SECONDS:g}; "
                   f"with --webhook {up_tree.SAFETY_NET_SECONDS:g}, a safety net for lost deliveries].")
@click.option("--verbose", is_flag=True, help="Show every event the nodes handle (WORKDIR/up.log) on the console too.")
def up(repos, spool, store, workdir, pipeline, ui, sandbox_mode, build_network, secrets, allow_hosts, poll, verbose,
       **hooks):
    """Run the whole CI for repositories here: hub, gitwatchers, workers. Ctrl-C stops it all."""
    allowed = allowed_names(allow_hosts)
    configure_builds(sandbox_mode, build_network, secrets)  # in the hub's environment: its workers inherit it
    defaults = up_tree.default_paths()
    spool, store = Path(spool or defaults["spool"]).resolve(), store or defaults["store"]
    workdir = Path(workdir or defaults["workdir"]).resolve()
    permissions.share_roots(spool, workdir, store_dir(store))  # its children share their own roots too
    repos = [git.resolve_repo(repo) for repo in repos]
    hub_args, shown_hooks = forges.up_hub_arguments(repos, **hooks)
    ui = None if ui == "off" else webui.free_address(ui)
    shown_ui = f"  ui        http://{ui}/\n" if ui else ""
    log_path = upconsole.log_file(workdir)
    click.echo(f"trivialci up: watching {', '.join(repos)}\n{shown_ui}{shown_hooks}  spool     {spool}\n"
               f"  store     {store}\n  workdir   {workdir}\n  log       {log_path}\n"
               f"  jobs      trivialci jobs --spool {spool}\n"
               f"  history   trivialci history list --store {store}\nCtrl-C stops everything.", err=True)
    for repo in repos:
        for line in pipeline_warnings(repo):
            click.echo(f"warning: {line}", err=True)
    poll = poll or (up_tree.SAFETY_NET_SECONDS if hooks["webhook"] else up_tree.WATCH_SECONDS)
    say = functools.partial(click.echo, err=True)
    with open(log_path, "ab", buffering=0) as output:
        console = upconsole.JobConsole(spool, f"http://{ui}/" if ui else None, log_path, say, verbose)
        children = up_tree.start_tree(repos, spool, store, workdir, _pipeline_dir(pipeline), ui, hub_args, poll,
                                      allowed, output)
        try:
            status_code = up_tree.wait_for_signal(children, console.poll)
        finally:
            up_tree.stop_tree(children, spool)
            console.poll()
    sys.exit(status_code)


@click.command()
@sharing_option
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
    setup_logging()
    permissions.share_roots(spool)
    GitWatcher(spool, repo, interval).serve(once=once)


def run_node(node_dir, options, advertise: dict, announce: str | None = None, outbox: Path | None = None) -> None:
    setup_logging()
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
        advertise=advertise, outbox=outbox, fork_server=options["fork_server"],
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


def _default_worker_name() -> str:
    host = socket.gethostname().split(".")[0]
    return "".join(c if (c.isascii() and c.isalnum()) or c in "_-" else "-" for c in host)[:63].strip("-_") or "worker"
