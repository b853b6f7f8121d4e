"""The command line: `trivialci up|hub|worker|gitwatcher|emit|status|jobs|build|rebuild|cancel|approve|history|
prune|state`.

Only this package imports click: options.py holds what the commands share
(one-line errors, the common options), nodes.py the commands that run a part
of the CI, records.py those that look and ask. Errors reach the user as one
line on stderr and an exit status (docs/protocol.md, "Exit statuses"); a
traceback is shown only for a bug, and only with TRIVIALCI_DEBUG=1. Nothing
in TrivialCi imports this package.
"""

import click

from .. import __version__
from . import forges, nodes, records
from ..spool import permissions
from .options import FriendlyGroup


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
    trivialci rebuild JOB --downstream --wait      run a job (and the stages after it) again
    trivialci cancel JOB --spool /var/ci
    trivialci approve JOB --spool /var/ci          build a fork's pull request held for approval
    trivialci history list --store file:///srv/ci-store
    trivialci prune --spool /var/ci --store file:///srv/ci-store --dry-run
    trivialci state verify --spool /var/ci         does state/ equal its rebuild from the event log?
    """
    permissions.restrict()  # private, whatever umask this was started with; --group widens it


for command in (nodes.up, nodes.hub, nodes.worker, nodes.gitwatcher, records.emit_command, records.status, records.jobs,
                records.build, records.rebuild, records.cancel, forges.approve, records.history, records.prune_command,
                records.state_group):
    cli.add_command(command)


def main() -> None:
    cli(prog_name="trivialci")
