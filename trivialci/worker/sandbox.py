"""A build's sandbox: bubblewrap (bwrap) around `.trivialci/KIND`, made from a small policy.

What a sandboxed build sees (docs/deploy.md, "Trust model"):

    /                       the host, read-only (toolchains work); no capability, even as root
    /dev, /proc             a minimal /dev; the /proc of its own PID namespace (no other process)
    /tmp, HOME              private, empty and writable (HOME is the worker user's home directory,
                            so its dotfiles, keys and credentials are not there); gone with the build
    /run                    private and empty (no host socket: docker's, dbus'), but for the
                            resolver's file when /etc/resolv.conf points there
    the CI's own paths      empty and read-only: the directories named by the worker's
                            TRIVIALCI_SPOOL, _NODE_DIR, _WORKDIR, _PIPELINE, _SECRETS, _OUTBOX,
                            and a file:// TRIVIALCI_STORE
    its worktree, its artifacts directory       writable
    its repository's mirror                     read-only (a worktree's .git points into it)

Its environment is made here too: PATH, the locale, TZ, TERM, USER, LOGNAME,
the proxies, HOME and TMPDIR; the job's variables and secrets are added by the
caller. Nothing else of the worker's (its TRIVIALCI_* paths, AWS keys...).

Nothing the build starts outlives it: bwrap's own init is PID 1 of the
build's PID namespace, reaps, and exits when the build's first process does,
and the kernel then kills everything left in the namespace (a setsid daemon
too). bwrap dies with the process that started it (--die-with-parent), and a
TERM to the build's process group (timeout, cancel) reaches bwrap, whose
death takes the namespace with it. Not --as-pid-1 (a shell as PID 1 neither
reaps nor gets a TERM it has no handler for), and not --new-session: the
build must stay in the process group the worker signals; it has no terminal
to push keys into anyway (the worker starts it in a session of its own).

Configured by the worker's environment (the CLI sets it from its options):
    TRIVIALCI_SANDBOX        on (default) | off: builds run as plain children, unsandboxed
    TRIVIALCI_BUILD_NETWORK  host (default) | none: a network namespace with loopback only
    TRIVIALCI_BWRAP          the bwrap to use [default: bwrap on PATH]
"""

import errno
import functools
import os
import pwd
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlsplit

from ..errors import TrivialCiError
from .secrets import SECRETS_ENV

SANDBOX_ENV = "TRIVIALCI_SANDBOX"
NETWORK_ENV = "TRIVIALCI_BUILD_NETWORK"
BWRAP_ENV = "TRIVIALCI_BWRAP"
CI_PATH_VARIABLES = ("SPOOL", "NODE_DIR", "WORKDIR", "PIPELINE", "SECRETS", "OUTBOX", "STORE")
PASSED_VARIABLES = {"PATH", "LANG", "LANGUAGE", "TZ", "TERM", "USER", "LOGNAME", "http_proxy", "https_proxy",
                    "no_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "ALL_PROXY"}
# How the node finds what an unsandboxed build left running (spool/processes.py); a sandbox needs no marks.
MARKS = ("TRIVIALCI_EVENT_ID", "TRIVIALCI_NODE_DIR")
ISOLATION = ["--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try", "--die-with-parent",
             "--cap-drop", "ALL"]
HOST = ["--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc"]
PRIVATE = ("/tmp", "/run")
GET_IT = ("install bubblewrap (apt-get install bubblewrap, dnf install bubblewrap) or name a working bwrap "
          f"in {BWRAP_ENV}")


class SandboxUnavailable(TrivialCiError):
    """No working bwrap here: builds cannot be sandboxed."""

    exit_code = 5


@dataclass(frozen=True)
class Sandbox:
    """How builds run: inside `bwrap` (None: unsandboxed), with or without the network."""

    bwrap: str | None
    network: bool = True
    hidden: tuple[str, ...] = ()
    home: str = field(default_factory=lambda: _home(os.environ))

    @classmethod
    def from_environment(cls, env=os.environ) -> "Sandbox":
        """The policy the worker's environment sets; SandboxUnavailable when on and bwrap does not work."""
        if sandbox_mode(env) == "off":
            return cls(None, home=_home(env))
        checked = env.get(BWRAP_ENV)  # the worker probed it at start: no job needs to again
        bwrap = checked if checked and os.access(checked, os.X_OK) else require_bwrap(env)
        return cls(bwrap, network=network_mode(env) == "host", hidden=ci_paths(env), home=_home(env))

    def command(self, argv: list[str], cwd, writable=(), readable=()) -> list[str]:
        """`argv` run in `cwd`, inside the sandbox (or as it is when there is none)."""
        if self.bwrap is None:
            return list(argv)
        _check_exec_format(argv[0])
        private = [path for path in (*PRIVATE, self.home) if path != "/"]
        hidden = _outermost(map(_real, self.hidden))  # under /tmp too: empty and read-only, not private
        readable = [*map(_real, readable), *_under(private + hidden, _interpreter_dirs()), *_resolver()]
        return [self.bwrap, *HOST, *ISOLATION, *([] if self.network else ["--unshare-net"]),
                *_mounts({"--tmpfs": private + hidden, "--ro-bind": readable, "--bind": map(_real, writable)}),
                *_each("--remount-ro", hidden), "--chdir", _real(cwd), "--", *argv]

    def environment(self, env=os.environ) -> dict:
        """The build's base environment: a few of the worker's variables, and its private HOME and TMPDIR."""
        kept = {name: value for name, value in env.items() if name in PASSED_VARIABLES or name.startswith("LC_")}
        if self.bwrap is None:
            return {**kept, **{name: env[name] for name in MARKS if name in env}, "HOME": env.get("HOME") or self.home}
        return {**kept, "HOME": self.home if self.home != "/" else "/tmp", "TMPDIR": "/tmp"}


def configure(mode: str, network: str, secrets=None, env=os.environ) -> str | None:
    """Set the worker's TRIVIALCI_SANDBOX, _BUILD_NETWORK, _BWRAP and _SECRETS in `env` (its scripts inherit
    them) for `mode`: on, off, or auto (on where bwrap works). A warning when builds will run unsandboxed;
    SandboxUnavailable when the sandbox is on and bwrap does not work."""
    problem = sandbox_problem(env) if mode == "auto" else None
    mode = "off" if problem else mode.replace("auto", "on")
    try:
        bwrap = {BWRAP_ENV: require_bwrap(env)} if mode == "on" else {}
    except SandboxUnavailable as error:
        raise SandboxUnavailable(f"{error}; or start with --sandbox off to run builds unsandboxed") from None
    env.update({SANDBOX_ENV: mode, NETWORK_ENV: network, **bwrap, **({SECRETS_ENV: str(secrets)} if secrets else {})})
    if mode == "off":
        return ("builds run WITHOUT a sandbox, as this user: they can read and change the spool, the store and "
                f"the secrets. {problem or 'Asked for with --sandbox off.'}")
    return None


def sandbox_problem(env=os.environ) -> str | None:
    """Why builds cannot be sandboxed here, and how to fix it; None when they can."""
    try:
        require_bwrap(env)
    except SandboxUnavailable as error:
        return str(error)
    return None


def sandbox_mode(env=os.environ) -> str:
    return _choice(env, SANDBOX_ENV, ("on", "off"))


def network_mode(env=os.environ) -> str:
    return _choice(env, NETWORK_ENV, ("host", "none"))


def _choice(env, name: str, allowed: tuple[str, ...]) -> str:
    value = env.get(name) or allowed[0]
    if value not in allowed:
        raise SandboxUnavailable(f"{name}={value!r} is not one of {', '.join(allowed)}: fix the worker's environment")
    return value


def find_bwrap(env=os.environ) -> str | None:
    """The bwrap named by TRIVIALCI_BWRAP, else the one on PATH; None when there is none."""
    return env.get(BWRAP_ENV) or shutil.which("bwrap", path=env.get("PATH", os.defpath))


def require_bwrap(env=os.environ) -> str:
    """The path of a bwrap that can make a sandbox here; SandboxUnavailable (saying how to get one) if not."""
    bwrap = find_bwrap(env)
    if bwrap is None or not os.path.exists(bwrap):
        where = f"at {bwrap} ({BWRAP_ENV})" if bwrap else "on PATH"
        raise SandboxUnavailable(f"no bwrap {where}, so builds cannot be sandboxed: {GET_IT}")
    problem = probe(os.path.abspath(bwrap))
    if problem:
        raise SandboxUnavailable(f"{bwrap} cannot make a sandbox here ({problem}): {GET_IT}, and check that "
                                 "user namespaces are allowed (sysctl kernel.unprivileged_userns_clone)")
    return os.path.abspath(bwrap)


@functools.cache
def probe(bwrap: str) -> str | None:
    """None if `bwrap` runs a command in a sandbox like the builds'; else what went wrong, in a few words."""
    try:
        done = subprocess.run([bwrap, *HOST, *ISOLATION, "--tmpfs", "/tmp", "--", "true"], stdin=subprocess.DEVNULL,
                              capture_output=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as error:
        return getattr(error, "strerror", None) or str(error)
    if done.returncode != 0:
        said = done.stderr.decode(errors="replace").strip().splitlines()
        return said[-1][:200] if said else f"exit status {done.returncode}"
    return None


def ci_paths(env=os.environ) -> tuple[str, ...]:
    """The CI's own directories, from the worker's environment: hidden from every build."""
    paths = []
    for name in CI_PATH_VARIABLES:
        value = env.get(f"TRIVIALCI_{name}") or ""
        if value.startswith("file:"):
            value = unquote(urlsplit(value).path)
        if os.path.isabs(value) and os.path.isdir(value) and _real(value) != "/":
            paths.append(value)
    return tuple(paths)


def _check_exec_format(program: str) -> None:
    """OSError ENOEXEC, as exec(2) would, for a file that is neither a #! script nor ELF.

    Inside the sandbox, bwrap's execvp would hand such a file to /bin/sh instead.
    """
    with open(program, "rb") as handle:
        magic = handle.read(4)
    if not magic.startswith(b"#!") and magic != b"\x7fELF":
        raise OSError(errno.ENOEXEC, os.strerror(errno.ENOEXEC), program)


def _home(env) -> str:
    """The worker user's home directory (where its dotfiles are), made private in the sandbox."""
    home = env.get("HOME") or pwd.getpwuid(os.getuid()).pw_dir
    return _real(home) if os.path.isabs(home) and os.path.isdir(home) else "/"


def _real(path) -> str:
    return os.path.realpath(os.fspath(path))


def _is_under(path: str, directory: str) -> bool:
    return path == directory or path.startswith(directory.rstrip("/") + "/")


def _shows(path: str, private: list[str]) -> bool:
    """Whether `path` would be visible without a mount of its own (it is not under a private directory)."""
    return not any(_is_under(path, directory) for directory in private)


def _under(directories: list[str], paths) -> list[str]:
    """The `paths` that one of `directories` would hide."""
    return [path for path in paths if not _shows(path, directories)]


def _outermost(paths) -> list[str]:
    """`paths` without those inside another one (hidden with it: a mount of their own would be hidden too)."""
    kept: list[str] = []
    for path in sorted(set(paths)):
        if _shows(path, kept):
            kept.append(path)
    return kept


def _interpreter_dirs() -> list[str]:
    """TrivialCi's interpreter (TRIVIALCI_PYTHON, a venv in the hidden home perhaps): builds may run it."""
    return sorted({_real(prefix) for prefix in (sys.prefix, sys.base_prefix, sys.exec_prefix)})


def _resolver() -> list[str]:
    """The directory of /etc/resolv.conf's target when it is under /run (systemd-resolved): DNS keeps working."""
    target = _real("/etc/resolv.conf")
    return [os.path.dirname(target)] if _is_under(target, "/run") and os.path.exists(target) else []


def _mounts(planned: dict) -> list[str]:
    """bwrap's mount options, each directory before anything inside it: a mount hides what is under it.

    So the worktree is bound into the hidden workdir, and the pipeline hidden inside
    an interpreter's directory that was bound back into the private home stays hidden.
    """
    order = list(planned)
    mounts = sorted({(Path(path).parts, order.index(option), option, path)
                     for option, paths in planned.items() for path in paths})
    return [argument for _, _, option, path in mounts
            for argument in ([option, path] if option == "--tmpfs" else [option, path, path])]


def _each(option: str, paths) -> list[str]:
    return [argument for path in paths for argument in (option, path)]
