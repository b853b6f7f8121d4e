"""The commands that look and ask: `emit`, `status`, `jobs`, `build`, `rebuild`, `cancel`, `history`, `prune`."""

import json
import os
import sys
from pathlib import Path

import click

from .. import git
from ..errors import BadInput
from ..hub import requests, retention, stages, verify
from ..hub.jobview import format_jobs, jobs_summary
from ..hub.state import HubState
from ..jobs import is_job_id
from ..spool.delivery import emit
from ..spool.event import parse_payload_text
from ..spool.status import format_status, spool_status
from ..store import STORE_ENV, open_store
from ..store.history import (format_job_record, format_job_table, format_push, job_log, list_jobs, push_jobs,
                             show_job)
from ..spool import permissions
from ..spool.terminal import printable
from .options import existing_spool, sharing_option, spool_option, store_option


@click.command("emit")
@sharing_option
@click.argument("event_type", metavar="TYPE")
@click.argument("payload", default="{}", metavar="[JSON|@FILE|-]")
@spool_option
@click.option("--to", default="hub", show_default=True, help="hub, worker:NAME, or a node directory.")
def emit_command(event_type, payload, spool, to):
    """Deliver an event atomically; print the path it was delivered to.

    The payload is a JSON object given as text, read from @FILE, or from - (stdin).
    """
    permissions.share_roots(spool if to == "hub" else None)
    delivered = emit(event_type, parse_payload_text(_payload_text(payload)), to=to, spool=spool)
    click.echo(delivered)


@click.command()
@spool_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def status(spool, as_json):
    """Show each node of the spool: heartbeat, inbox, running events, today's counts."""
    if not os.path.isdir(spool):
        raise BadInput(f"no spool at {spool}: check the path, or start a hub there with `trivialci hub --spool {spool}`")
    summary = spool_status(spool)
    click.echo(json.dumps(summary, indent=2) if as_json else format_status(summary))


@click.command()
@spool_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.option("--store", envvar=STORE_ENV, default=None, help="Read older results from this artifact store too.")
def jobs(spool, as_json, store):
    """Show the queue, what runs on which worker, and the last results (from the hub's state/, then the store)."""
    summary = jobs_summary(HubState(existing_spool(spool)), store=open_store(store) if store else None)
    click.echo(json.dumps(summary, indent=2) if as_json else format_jobs(summary))


@click.command()
@sharing_option
@spool_option
@click.option("--repo", required=True, help="The repository (a path or URL), as the gitwatcher names it.")
@click.option("--branch", required=True, help="The branch to build (its current head).")
@click.option("--wait", is_flag=True, help="Wait for the jobs; exit 0 if all PASSED, 1 if not.")
@click.option("--timeout", default=3600.0, show_default=True, type=click.FloatRange(min=0, min_open=True),
              help="With --wait: give up after SECONDS (exit 1).")
def build(spool, repo, branch, wait, timeout):
    """Ask the hub to build a branch now, as if it had just been pushed."""
    request = requests.request_build(spool, git.resolve_repo(repo), git.check_branch(branch))
    click.echo(f"requested {request['request']}: {printable(branch)} at {request['new'][:12]}")
    if wait:
        sys.exit(requests.wait_for_request(spool, request["request"], timeout, lambda line: click.echo(printable(line))))


@click.command()
@sharing_option
@spool_option
@click.argument("job")
@click.option("--downstream", is_flag=True, help="Then run the later stages of its push again, on its artifacts.")
@click.option("--wait", is_flag=True, help="Wait for the new jobs; exit 0 if all PASSED, 1 if not.")
@click.option("--timeout", default=3600.0, show_default=True, type=click.FloatRange(min=0, min_open=True),
              help="With --wait: give up after SECONDS (exit 1).")
def rebuild(spool, job, downstream, wait, timeout):
    """Run a job that is over again, as a new job: the same repository, sha, kind and parameters."""
    if not is_job_id(job):
        raise BadInput(f"{job!r} is not a job id (YYYYmmddTHHMMSSZ-xxxxxx): see `trivialci jobs`")
    spool = existing_spool(spool)
    stages.rebuildable(HubState(spool), job)  # said at once; the hub checks again when it runs the request
    request = requests.request_rebuild(spool, job, downstream)
    click.echo(f"requested {request}: {job} again" + (", then the later stages of its push" if downstream else ""))
    if wait:
        sys.exit(requests.wait_for_request(spool, request, timeout, lambda line: click.echo(printable(line))))


@click.command()
@sharing_option
@spool_option
@click.argument("job")
def cancel(spool, job):
    """Cancel a job: dropped if queued, stopped on its worker if running."""
    if not is_job_id(job):
        raise BadInput(f"{job!r} is not a job id (YYYYmmddTHHMMSSZ-xxxxxx): see `trivialci jobs`")
    click.echo(emit("cancel", {"job": job}, to="hub", spool=existing_spool(spool)))


@click.group()
def history():
    """Jobs from the artifact store alone (no hub needed): list, show, push, log."""


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


@history.command("push")
@click.argument("job")
@store_option
def history_push(job, store):
    """Every job of the push JOB belongs to, by stage (.trivialci/NN-KIND), from their records."""
    jobs_found = push_jobs(open_store(store), job)
    click.echo(format_push(jobs_found) if jobs_found else f"{job} is of no push in stages (its record has no plan)")


@history.command("log")
@click.argument("job")
@store_option
def history_log(job, store):
    """A job's output (its log.txt), as it was written."""
    click.echo(job_log(open_store(store), job), nl=False)


@click.command("prune")
@spool_option
@click.option("--store", envvar=STORE_ENV, default=None, metavar="URL",
              help=f"The artifact store whose old jobs go (without it only the spool is pruned). Env: {STORE_ENV}.")
@click.option("--keep-days", default=30, show_default=True, type=click.IntRange(min=1),
              help="Keep finished jobs and done/ days younger than this.")
@click.option("--keep-last", default=20, show_default=True, type=click.IntRange(min=0),
              help="Keep the newest N jobs of each (repository, branch, kind), however old.")
@click.option("--keep-failed-days", default=90, show_default=True, type=click.IntRange(min=1),
              help="Keep failed/ days younger than this (at least --keep-days).")
@click.option("--worker-log-mib", default=10, show_default=True, type=click.IntRange(min=1),
              help="Cut a booted worker's log (SPOOL/workers/NAME.log) beyond this size; its last MiBs go to NAME.log.1.")
@click.option("--dry-run", is_flag=True, help="Print what would go and the bytes it would free; change nothing.")
def prune_command(spool, store, keep_days, keep_last, keep_failed_days, worker_log_mib, dry_run):
    """Remove what the retention policy lets go (docs/protocol.md, "Retention"); print what went."""
    policy = retention.RetentionPolicy(keep_days, keep_last, keep_failed_days, worker_log_bytes=worker_log_mib << 20)
    plan = retention.prune(existing_spool(spool), store, policy, dry_run=dry_run)
    click.echo("\n".join(plan.lines(done=not dry_run)))


def _payload_text(payload: str) -> str:
    if payload == "-":
        return sys.stdin.read()
    if payload.startswith("@"):
        try:
            return Path(payload[1:]).read_text()
        except OSError as error:
            raise BadInput(f"cannot read the payload file {payload[1:]}: {error.strerror}") from None
    return payload


@click.group("state")
def state_group():
    """The hub's state/, derived from its event log."""


@state_group.command("verify")
@spool_option
def state_verify(spool):
    """Rebuild state/ into a temporary directory and print how the live one differs (exit 1 if it does)."""
    sys.exit(verify.verify_command(existing_spool(spool), click.echo))
