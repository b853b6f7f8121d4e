"""Simulated hosts on this one machine: Linux network namespaces joined by veth links, sshd in each.

A `Network` has a "hub" host, worker hosts "w1".."wN" and optionally an "s3" host. Every worker has its own
link to the hub, and the s3 host has its own link to every other host, so that cutting a worker off the hub
(`partition`) leaves S3 reachable, as it would be for machines in a real data centre. Each link is a /30
of its own; a host's address therefore depends on who asks: `host.address_for(peer)`.

Only the network (and, for each process, the hostname) is separate: every host shares this machine's file
system and mounts, so a `mount()` made "from" a worker is visible to the test and to every process, and files
on the hub are the test's files. Nothing touches the root network namespace: veth ends are created directly
inside our namespaces, so their names ("to-hub", "to-w1") only need to be unique within a namespace.

Needs root, iproute2, util-linux (nsenter, unshare), openssh-server and -client, sshfs and fuse3;
`skip_reason()` says what is missing. Tests use the `hosts` fixture: `from hosts import hosts  # noqa: F401`.
"""

import contextlib
import functools
import itertools
import os
import random
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import wait_for

SSHD = "/usr/sbin/sshd"
# reconnect: after a partition heals, the next file operation opens a new ssh connection (without it the
# mount stays dead). dir_cache=no: a worker sees the hub's new files at once, not after a cache timeout.
# ServerAlive*: a partition turns into EIO after about 2*2 s instead of a hang until TCP gives up.
DEFAULT_SSHFS_OPTIONS = "reconnect,dir_cache=no,ServerAliveInterval=2,ServerAliveCountMax=2"
_CONNECT = "import socket, sys; socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=float(sys.argv[3]))"
_names = itertools.count()


@functools.cache
def skip_reason() -> str | None:
    """Why this machine cannot run simulated hosts, or None when it can."""
    if os.geteuid() != 0:
        return "simulated hosts need root (network namespaces, sshd, FUSE mounts)"
    for tool, package in (("ip", "iproute2"), ("nsenter", "util-linux"), ("unshare", "util-linux"),
                          ("hostname", "hostname"), ("ssh", "openssh-client"), ("ssh-keygen", "openssh-client"),
                          ("sshfs", "sshfs"), ("fusermount3", "fuse3")):
        if shutil.which(tool) is None:
            return f"{tool} is missing: apt-get install {package}"
    if not os.access(SSHD, os.X_OK):
        return f"{SSHD} is missing: apt-get install openssh-server"
    if not os.path.exists("/dev/fuse"):
        return "/dev/fuse is missing: load the fuse module (in a container: --device /dev/fuse)"
    probe = f"tciprobe{os.getpid()}"
    added = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if added.returncode != 0:
        return f"cannot create a network namespace (a container needs CAP_SYS_ADMIN): {added.stderr.strip()}"
    subprocess.run(["ip", "netns", "delete", probe], capture_output=True)
    return None


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True)


class Host:
    """One simulated machine: a network namespace, and a hostname of its own for every process run in it."""

    def __init__(self, network: "Network", name: str):
        self.network = network
        self.name = name
        self.netns = f"tci{os.getpid()}x{next(_names)}{name}"
        self.addresses: dict[str, str] = {}  # peer's name -> this host's address on the link to that peer
        self.sshd: subprocess.Popen | None = None

    def __repr__(self) -> str:
        return f"Host({self.name!r}, netns={self.netns!r})"

    def address_for(self, peer: "Host") -> str:
        """The address `peer` reaches this host at (each link is its own /30; a host reaches itself on lo)."""
        return "127.0.0.1" if peer is self else self.addresses[peer.name]

    @property
    def address(self) -> str:
        """A worker's (or the s3 host's) address on its link to the hub: where the hub reaches it."""
        return self.addresses["hub"]

    def popen(self, args, env=None, **kwargs) -> subprocess.Popen:
        """Start `args` in this host's network namespace with this host's hostname; close() kills it.

        nsenter, unshare and sh each exec the next, so the Popen's pid is the program's own."""
        kwargs.setdefault("stdin", subprocess.DEVNULL)
        proc = subprocess.Popen(self._command(args), env=_environment(env), **kwargs)
        self.network.processes.append(proc)
        return proc

    def run(self, args, env=None, timeout=60, **kwargs) -> subprocess.CompletedProcess:
        """Run `args` to completion in this host (see popen); `capture_output=True, text=True` by default."""
        kwargs.setdefault("capture_output", True)
        kwargs.setdefault("text", True)
        kwargs.setdefault("stdin", subprocess.DEVNULL)
        return subprocess.run(self._command(args), env=_environment(env), timeout=timeout, **kwargs)

    def _command(self, args) -> list[str]:
        return ["nsenter", f"--net=/var/run/netns/{self.netns}", "unshare", "--uts", "--",
                "sh", "-c", 'hostname "$0" && exec "$@"', self.name, *map(str, args)]

    def connects(self, address: str, port: int, timeout: float = 1.0) -> bool:
        """Whether a TCP connection from this host to address:port succeeds."""
        return self.run([sys.executable, "-c", _CONNECT, address, port, timeout], timeout=timeout + 10).returncode == 0


class Network:
    """Hosts in network namespaces: "hub", worker hosts "w1".."wN", and optionally "s3" (a place for an S3
    server that every host reaches over its own link, so a hub<->worker partition leaves S3 reachable).

    sshd listens on port 22 of every host but s3, with one client key (root's) authorized everywhere;
    `ssh_config` is the client side. Keys, configs and logs go under `root`. `close()` undoes everything."""

    def __init__(self, root: Path, workers: int = 1, s3: bool = False):
        if not 1 <= workers <= 30:
            raise ValueError("between 1 and 30 workers (the links share one /24)")
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.processes: list[subprocess.Popen] = []
        self.mounts: list[Path] = []
        self.namespaces: list[str] = []
        self.logs: list = []
        self.closed = False
        # Addresses never meet other Networks' (separate namespaces); a random base tells runs apart in logs.
        self.subnet = f"10.{100 + random.randint(0, 150)}.{random.randint(0, 255)}"
        self.links = 0
        try:
            self.hub = self._add_host("hub")
            self.workers = [self._add_host(f"w{i}") for i in range(1, workers + 1)]
            self.s3 = self._add_host("s3") if s3 else None
            for worker in self.workers:
                self._link(self.hub, worker)
            if self.s3:
                for host in [self.hub, *self.workers]:
                    self._link(self.s3, host)
            self._write_keys()
            for host in [self.hub, *self.workers]:
                self._start_sshd(host)
            for host in [self.hub, *self.workers]:
                wait_for(functools.partial(self._sshd_ready, host), timeout=20, message=f"sshd in {host}")
        except BaseException:
            self.close()
            raise

    @property
    def hosts(self) -> list[Host]:
        return [self.hub, *self.workers, *([self.s3] if self.s3 else [])]

    def ssh_command(self) -> str:
        """`ssh -F <ssh_config>`: for GIT_SSH_COMMAND, or to prefix `user@address command`."""
        return f"ssh -F {self.ssh_config}"

    def mount(self, host: Host, remote_dir: Path, mount_point: Path, options: str = DEFAULT_SSHFS_OPTIONS) -> Path:
        """Mount the hub's `remote_dir` on `mount_point` with sshfs connecting from `host`; visible to every
        process (only sshfs's network namespace is the host's). Returns once the mount is in place."""
        mount_point = Path(mount_point)
        mount_point.mkdir(parents=True, exist_ok=True)
        log = self._log(f"sshfs-{host.name}-{len(self.mounts)}.log")
        proc = host.popen(["sshfs", "-f", "-F", self.ssh_config, f"root@{self.hub.address_for(host)}:{remote_dir}",
                           mount_point, "-o", options], stdout=log, stderr=subprocess.STDOUT)
        self.mounts.append(mount_point)

        def mounted():
            if proc.poll() is not None:
                raise AssertionError(f"sshfs exited with {proc.returncode}: {Path(log.name).read_text()}")
            return is_sshfs_mount(mount_point)

        wait_for(mounted, timeout=20, message=f"the sshfs mount on {mount_point}")
        return mount_point

    def partition(self, host: Host) -> None:
        """Cut `host` off the hub (its end of their link goes down); its other links stay up."""
        _ip("-n", host.netns, "link", "set", "to-hub", "down")

    def heal(self, host: Host) -> None:
        """Undo partition(host); returns once the hub's sshd accepts connections from `host` again."""
        _ip("-n", host.netns, "link", "set", "to-hub", "up")
        wait_for(lambda: host.connects(self.hub.address_for(host), 22), timeout=20,
                 message=f"{host.name} to reach the hub again")

    def close(self) -> None:
        """Kill every process started in these hosts, unmount, delete the namespaces. Idempotent."""
        if self.closed:
            return
        self.closed = True
        try:
            for proc in self.processes:  # sshfs among them: killing it aborts its mount's pending requests
                if proc.poll() is None:
                    proc.kill()
            for proc in self.processes:
                proc.wait(10)
            # What those processes started in turn (sshd's sessions, sshfs's ssh, a node's jobs) runs in our
            # namespaces too, and would keep them alive.
            wait_for(self._kill_strays, timeout=10, interval=0.05, message="the hosts' processes to end")
        finally:
            for mount_point in self.mounts:
                if is_sshfs_mount(mount_point):
                    if subprocess.run(["fusermount3", "-u", mount_point], capture_output=True).returncode != 0:
                        subprocess.run(["umount", "-l", mount_point], capture_output=True)
            for netns in self.namespaces:
                subprocess.run(["ip", "netns", "delete", netns], capture_output=True)
            for log in self.logs:
                log.close()

    def _kill_strays(self) -> bool:
        found = False
        for netns in self.namespaces:
            pids = subprocess.run(["ip", "netns", "pids", netns], capture_output=True, text=True).stdout.split()
            for pid in pids:
                found = True
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except ProcessLookupError:
                    pass
        return not found

    def _add_host(self, name: str) -> Host:
        host = Host(self, name)
        _ip("netns", "add", host.netns)
        self.namespaces.append(host.netns)
        _ip("-n", host.netns, "link", "set", "lo", "up")
        return host

    def _link(self, a: Host, b: Host) -> None:
        """A veth pair between a and b, "to-B" in a and "to-A" in b, with a /30 of its own."""
        base = 4 * self.links
        self.links += 1
        _ip("link", "add", f"to-{b.name}", "netns", a.netns, "type", "veth", "peer", "name", f"to-{a.name}",
            "netns", b.netns)
        for host, peer, last in ((a, b, base + 1), (b, a, base + 2)):
            host.addresses[peer.name] = f"{self.subnet}.{last}"
            _ip("-n", host.netns, "addr", "add", f"{self.subnet}.{last}/30", "dev", f"to-{peer.name}")
            _ip("-n", host.netns, "link", "set", f"to-{peer.name}", "up")

    def _write_keys(self) -> None:
        self.client_key = self.root / "client_key"
        _keygen(self.client_key)
        self.authorized_keys = self.root / "authorized_keys"
        shutil.copyfile(self.client_key.with_suffix(".pub"), self.authorized_keys)
        self.ssh_config = self.root / "ssh_config"
        self.ssh_config.write_text(f"""Host *
    User root
    IdentityFile {self.client_key}
    IdentitiesOnly yes
    StrictHostKeyChecking no
    UserKnownHostsFile /dev/null
    BatchMode yes
    LogLevel ERROR
    ConnectTimeout 3
    ServerAliveInterval 2
    ServerAliveCountMax 2
""")

    def _start_sshd(self, host: Host) -> None:
        directory = self.root / host.name
        directory.mkdir(exist_ok=True)
        _keygen(directory / "ssh_host_ed25519_key")
        config = directory / "sshd_config"
        config.write_text(f"""Port 22
ListenAddress 0.0.0.0
HostKey {directory / "ssh_host_ed25519_key"}
AuthorizedKeysFile {self.authorized_keys}
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
PidFile {directory / "sshd.pid"}
Subsystem sftp internal-sftp
StrictModes no
PrintMotd no
""")
        os.makedirs("/run/sshd", exist_ok=True)  # sshd's privilege separation directory
        log = self._log(f"sshd-{host.name}.log")
        host.sshd = host.popen([SSHD, "-D", "-e", "-f", config], stdout=log, stderr=subprocess.STDOUT)

    def _sshd_ready(self, host: Host) -> bool:
        if host.sshd.poll() is not None:
            raise AssertionError(f"sshd in {host} exited with {host.sshd.returncode}: "
                                 f"{(self.root / f'sshd-{host.name}.log').read_text()}")
        return host.connects("127.0.0.1", 22)

    def _log(self, name: str):
        log = open(self.root / name, "w")
        self.logs.append(log)
        return log


def _environment(env: dict | None) -> dict | None:
    return None if env is None else {**os.environ, **env}


def _keygen(path: Path) -> None:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", path.name, "-f", path], check=True,
                   capture_output=True)


def is_sshfs_mount(mount_point: Path) -> bool:
    """Whether /proc/self/mountinfo has a fuse.sshfs mount on mount_point."""
    target = os.path.realpath(mount_point)
    with open("/proc/self/mountinfo") as mountinfo:
        for line in mountinfo:
            fields = line.split()
            separator = fields.index("-")
            point = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), fields[4])  # \040 is a space
            if point == target and fields[separator + 1] == "fuse.sshfs":
                return True
    return False


@pytest.fixture
def hosts(tmp_path):
    """make(workers=1, s3=False) -> Network under tmp_path; every Network is closed after the test."""
    reason = skip_reason()
    if reason:
        pytest.skip(reason)
    networks = []

    def make(workers: int = 1, s3: bool = False) -> Network:
        network = Network(tmp_path / f"network{len(networks)}", workers=workers, s3=s3)
        networks.append(network)
        return network

    yield make
    with contextlib.ExitStack() as stack:  # closes every network even if one close() fails
        for network in networks:
            stack.callback(network.close)
