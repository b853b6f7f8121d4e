"""Booting a worker: here, detached, or on another host over ssh. What pipeline/boot_worker.py does.

The hub asks for a worker with boot_worker {"kind": KIND, "name": NAME}
(scheduling.boot_workers). Where it starts depends on TRIVIALCI_BOOT_HOSTS in
the hub's environment, comma-separated `KIND=WHERE` (KIND `*`: every other kind):

  unset, or KIND=local   here: `python -m trivialci worker ...` in a session of
                         its own, output in SPOOL/workers/NAME.log, sharing the
                         hub's git mirrors (TRIVIALCI_MIRRORS)
  KIND=[USER@]HOST       there: ssh HOST 'setsid -f COMMAND worker ... >>LOG 2>&1 </dev/null'
  KIND=none              nowhere: workers of KIND are started by other means (systemd on their hosts)
  set, KIND not named    nowhere, and the boot fails saying what to add

The ssh boot is the template for any other (a cloud API, a VM manager): make
a machine that sees the spool run the same worker command. The hub only waits
for the worker's heartbeat in SPOOL/workers/NAME/.

For ssh, also from the hub's environment:
  TRIVIALCI_BOOT_SPOOL    the spool's path on those hosts [default: the hub's own spool path]
  TRIVIALCI_BOOT_SSH      the ssh command [default: ssh -o BatchMode=yes -o ConnectTimeout=10]
  TRIVIALCI_BOOT_COMMAND  how to run trivialci there, shell text [default: trivialci]
  TRIVIALCI_BOOT_ARGS     more worker options, shell text (e.g. --workdir /srv/ci --log-listen 0.0.0.0:8181)
  TRIVIALCI_BOOT_LOG      the worker's output there [default: trivialci-worker-NAME.log in the login's home]
"""

import os
import shlex
import subprocess
import sys
from pathlib import Path

from ..errors import BadInput, TrivialCiError
from ..jobs import check_kind
from ..spool.layout import check_node_name, under
from ..git.mirror import MIRRORS_ENV, mirrors_dir
from .scheduling import LOST_AFTER

HOSTS_ENV = "TRIVIALCI_BOOT_HOSTS"
DEFAULT_SSH = "ssh -o BatchMode=yes -o ConnectTimeout=10"
# The event's own variables: a worker that kept them would carry the event's marks (a timeout of the
# boot_worker event would stop it) and its paths.
PER_EVENT = {"EVENT", "EVENT_ID", "EVENT_FILE", "ATTEMPT", "LOG", "NODE", "NODE_DIR", "SPOOL", "PIPELINE", "KIND",
             "WORKER", "STORE", "WORKDIR", "UI_URL", "LOG_URL", "OUTBOX"}
# The hub's secrets: `trivialci hub` removes them from its environment, and a worker (whose builds inherit its
# environment) must not get them even from a hub started another way.
HUB_SECRETS = {"WEBHOOK_SECRET", "GITHUB_TOKEN", "GITEA_TOKEN", "GITLAB_TOKEN"}


def host_for(kind: str, env) -> str:
    """Where a worker of `kind` starts: "local" or [USER@]HOST."""
    configured = env.get(HOSTS_ENV, "").strip()
    if not configured:
        return "local"
    hosts = dict(_entry(item) for item in configured.split(",") if item.strip())
    if kind not in hosts and "*" not in hosts:
        raise BadInput(f"no host for workers of kind {kind!r}: add {kind}=[USER@]HOST (or {kind}=local, or "
                       f"{kind}=none) to {HOSTS_ENV} in the hub's environment (now {configured!r})")
    return hosts.get(kind, hosts.get("*"))


def worker_arguments(kind: str, name: str, spool: str, env) -> list[str]:
    """The worker's options, wherever it runs: it beats six times within the hub's LOST_AFTER."""
    arguments = ["worker", "--spool", spool, "--name", name, "--kind", kind, "--heartbeat", str(max(0.2, LOST_AFTER / 6))]
    if env.get("TRIVIALCI_STORE"):
        arguments += ["--store", env["TRIVIALCI_STORE"]]
    return arguments


def boot_here(kind: str, name: str, env) -> str:
    """Start the worker on this host, detached; a line for the event's log."""
    spool = env["TRIVIALCI_SPOOL"]
    workdir = under(os.path.dirname(env["TRIVIALCI_WORKDIR"]), name)  # beside the hub's: WORKDIR/../NAME
    command = [sys.executable, "-m", "trivialci", *worker_arguments(kind, name, spool, env), "--jobs", "2",
               "--workdir", str(workdir), "--pipeline", env["TRIVIALCI_PIPELINE"]]
    if env.get("TRIVIALCI_UI_URL"):  # finished jobs' log links lead to the hub's page of the job
        command += ["--hub-ui", env["TRIVIALCI_UI_URL"]]
    environment = {k: v for k, v in env.items()
                   if not (k.startswith("TRIVIALCI_") and k[10:] in PER_EVENT | HUB_SECRETS)}
    environment[MIRRORS_ENV] = str(mirrors_dir(env["TRIVIALCI_WORKDIR"], env))  # one host, one fetch per push
    os.makedirs(os.path.join(spool, "workers"), exist_ok=True)
    with open(under(Path(spool) / "workers", f"{name}.log"), "ab") as log:
        worker = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=environment,
                                  start_new_session=True)
    return f"started worker {name} ({kind}), pid {worker.pid}: {' '.join(command)}"


def boot_over_ssh(kind: str, name: str, host: str, env) -> str:
    """Start the worker on `host`, detached there (setsid -f), and return when ssh does; a line for the log."""
    arguments = worker_arguments(kind, name, env.get("TRIVIALCI_BOOT_SPOOL") or env["TRIVIALCI_SPOOL"], env)
    log = env.get("TRIVIALCI_BOOT_LOG") or f"trivialci-worker-{name}.log"
    remote = (f"setsid -f {env.get('TRIVIALCI_BOOT_COMMAND') or 'trivialci'} {shlex.join(arguments)} "
              f"{env.get('TRIVIALCI_BOOT_ARGS', '')} >>{shlex.quote(log)} 2>&1 </dev/null")
    ssh = shlex.split(env.get("TRIVIALCI_BOOT_SSH") or DEFAULT_SSH)
    print(f"starting worker {name} ({kind}) on {host}: ... {shlex.join(arguments)}", flush=True)  # no secrets
    try:
        done = subprocess.run([*ssh, host, remote], stdin=subprocess.DEVNULL, timeout=120)
    except (OSError, subprocess.TimeoutExpired) as error:
        raise TrivialCiError(f"cannot run {ssh[0]} to {host}: {error}") from None
    if done.returncode != 0:
        raise TrivialCiError(f"ssh {host} exited with {done.returncode}: is the host up, does it accept this "
                             "user's key, is trivialci installed there (TRIVIALCI_BOOT_COMMAND)?")
    return f"worker {name} is starting on {host}; its output goes to {log} there"


def boot(kind: str, name: str, env=os.environ) -> str:
    """Start a worker where TRIVIALCI_BOOT_HOSTS says; a line for the event's log.

    `kind` and `name` come from a boot_worker event: they are checked here, before
    they become a command line, a log file's name and a workdir.
    """
    kind, name = check_kind(kind), check_node_name(name)
    host = host_for(kind, env)
    if host == "none":
        return f"not booting {name}: {HOSTS_ENV} says workers of kind {kind} are started on their own hosts"
    return boot_here(kind, name, env) if host == "local" else boot_over_ssh(kind, name, host, env)


def _entry(item: str) -> tuple[str, str]:
    kind, separator, host = item.strip().partition("=")
    if not separator or not kind or not host:
        raise BadInput(f"bad entry {item.strip()!r} in {HOSTS_ENV}: write KIND=[USER@]HOST, KIND=local or KIND=none")
    return kind.strip(), host.strip()
