"""Hub: start a worker of a kind on another machine, over ssh. The template for booting workers anywhere.

Use it as your pipeline's boot_worker.py:

    cp -r pipeline /etc/trivialci/pipeline          # the shipped scripts, from a checkout of TrivialCi
    cp contrib/boot_worker_ssh.py /etc/trivialci/pipeline/boot_worker.py
    trivialci hub --spool /var/ci --pipeline /etc/trivialci/pipeline ...

The hub sends itself boot_worker {"kind": KIND, "name": NAME} when jobs of a
kind wait and no live worker of that kind is there (scheduling.boot_workers).
This script then runs, on the host configured for KIND:

    ssh HOST 'setsid -f COMMAND worker --spool SPOOL --name NAME --kind KIND [--store URL] \
              --heartbeat S ARGS >>LOG 2>&1 </dev/null'

and returns as soon as ssh does: `setsid -f` detaches the worker from the
ssh session. The worker host must already see the spool (an sshfs or NFS
mount, see docs/deploy.md) and have TrivialCi and the store's credentials.
Configuration, from the hub's environment:

    TRIVIALCI_BOOT_HOSTS    KIND=[USER@]HOST, comma-separated (required), e.g. build=ci@build1,docs=ci@build2
    TRIVIALCI_BOOT_SPOOL    the spool's path on those hosts [default: the hub's own spool path]
    TRIVIALCI_BOOT_SSH      the ssh command [default: ssh -o BatchMode=yes -o ConnectTimeout=10]
    TRIVIALCI_BOOT_COMMAND  how to run trivialci there, as shell text [default: trivialci], e.g.
                            "/opt/trivialci/bin/trivialci" or ". /etc/trivialci/worker.env; trivialci"
    TRIVIALCI_BOOT_ARGS     more worker options, as shell text, e.g. "--workdir /srv/ci --log-listen 0.0.0.0:8181"
    TRIVIALCI_BOOT_LOG      the worker's output on that host [default: trivialci-worker-NAME.log in the
                            login's home]

For a cloud, replace the ssh call by your provider's "start an instance with
this user data" (the user data mounts the spool and runs the same worker
command), and keep the rest: the hub only needs the worker's heartbeat to
appear in SPOOL/workers/NAME/ within BOOT_PATIENCE seconds.
"""

import json
import os
import shlex
import subprocess
import sys

from trivialci.scheduling import LOST_AFTER

payload = json.load(sys.stdin)
kind, name = payload["kind"], payload["name"]
hosts = dict(entry.strip().split("=", 1) for entry in os.environ.get("TRIVIALCI_BOOT_HOSTS", "").split(",")
             if "=" in entry)
if kind not in hosts:
    sys.exit(f"no host for workers of kind {kind!r}: add {kind}=[USER@]HOST to TRIVIALCI_BOOT_HOSTS "
             f"in the hub's environment (now: {os.environ.get('TRIVIALCI_BOOT_HOSTS', 'unset')!r})")

spool = os.environ.get("TRIVIALCI_BOOT_SPOOL") or os.environ["TRIVIALCI_SPOOL"]
worker = ["worker", "--spool", spool, "--name", name, "--kind", kind, "--heartbeat", str(max(0.2, LOST_AFTER / 6))]
if os.environ.get("TRIVIALCI_STORE"):
    worker += ["--store", os.environ["TRIVIALCI_STORE"]]
log = os.environ.get("TRIVIALCI_BOOT_LOG") or f"trivialci-worker-{name}.log"
remote = (f"setsid -f {os.environ.get('TRIVIALCI_BOOT_COMMAND') or 'trivialci'} {shlex.join(worker)} "
          f"{os.environ.get('TRIVIALCI_BOOT_ARGS', '')} >>{shlex.quote(log)} 2>&1 </dev/null")
ssh = shlex.split(os.environ.get("TRIVIALCI_BOOT_SSH") or "ssh -o BatchMode=yes -o ConnectTimeout=10")
command = [*ssh, hosts[kind], remote]
print(f"starting worker {name} ({kind}) on {hosts[kind]}: ... {shlex.join(worker)}", flush=True)  # no secrets
done = subprocess.run(command, stdin=subprocess.DEVNULL, timeout=120)
if done.returncode != 0:
    sys.exit(f"ssh {hosts[kind]} exited with {done.returncode}: is the host up, its key in authorized_keys, "
             "trivialci installed there (TRIVIALCI_BOOT_COMMAND)?")
print(f"worker {name} is starting on {hosts[kind]}; its output goes to {log} there")
