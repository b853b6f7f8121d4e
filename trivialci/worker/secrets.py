"""Secrets: files on the worker, given to trusted builds as environment variables, masked in their logs.

The worker's secrets directory (--secrets DIR, or TRIVIALCI_SECRETS):

    DIR/KIND.env            the secrets of jobs of KIND, from every repository
    DIR/NAME/repo           one line: a repository, as the hub names it (the gitwatcher's --repo)
    DIR/NAME/KIND.env       the secrets of jobs of KIND from that repository only; its keys win

A .env file holds KEY=VALUE lines (KEY: letters, digits, '_', not starting
with a digit nor with TRIVIALCI_; VALUE: the rest of the line, as it is, at
least MIN_VALUE_BYTES long so that masking it does not blank common words);
blank lines and lines starting with '#' are ignored. No quoting, no
expansion. The directory and its files belong to the worker's user (or
root), are not links, and no one else may write them; the files are not
readable by others either. Anything else is refused with the reason.

The worker reads them at each job (so an edit needs no restart), only on its
own disk: no secret is in an event, the spool, a job record, the store or the
UI. A job gets the secrets of its kind only if it is trusted (see
`gets_secrets`); the build's output then has every secret value replaced by
*** before it reaches the live log, the log file or the store (SecretMask,
used by buildlog.LogCopier).
"""

import os
import re
import stat
from pathlib import Path

from ..errors import BadInput
from ..git.commands import resolve_repo
from ..spool.files import DIRECTORY_FLAGS, open_regular

SECRETS_ENV = "TRIVIALCI_SECRETS"
MASK = b"***"
MIN_VALUE_BYTES = 4
MAX_FILE_BYTES = 65536
KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}\Z")


def gets_secrets(package: dict) -> bool:
    """Whether a job may have secrets: trusted, or approved with "secrets": true.

    "trusted": false marks a job whose code comes from someone without push
    access (a fork's pull request, set by a forge integration); anything but
    a missing field or JSON true counts as untrusted. Its "approval"
    ({"by": NAME, "secrets": true}) gives it secrets only when it says so.
    """
    if package.get("trusted", True) is True:
        return True
    approval = package.get("approval")
    return isinstance(approval, dict) and approval.get("secrets") is True


def check_directory(directory) -> Path:
    """DIR as an absolute path, with every .env file in it readable and well-formed; BadInput if not."""
    directory = Path(os.path.abspath(directory))
    _check_directory(directory)
    for path in sorted(directory.glob("*.env")) + sorted(directory.glob("*/*.env")):
        read_env_file(path)
    for path in sorted(directory.glob("*/repo")):
        _repo_of(path.parent)
    return directory


def secrets_for(directory, kind: str, repo: str) -> dict[str, str]:
    """The secrets of a job of `kind` from `repo`: DIR/KIND.env, then DIR/NAME/KIND.env of that repository."""
    directory = Path(directory)
    _check_directory(directory)
    found = read_env_file(directory / f"{kind}.env", missing_ok=True)
    for own in _repository_dirs(directory, repo):
        found.update(read_env_file(own / f"{kind}.env", missing_ok=True))
    return found


def read_env_file(path, missing_ok: bool = False) -> dict[str, str]:
    """The KEY=VALUE pairs of one .env file, after the checks of the module docstring."""
    try:
        text = _read_private(path, MAX_FILE_BYTES).decode("utf-8")
    except FileNotFoundError:
        if missing_ok:
            return {}
        raise BadInput(f"no secrets file {path}") from None
    except UnicodeDecodeError:
        raise BadInput(f"the secrets file {path} is not UTF-8 text") from None
    return dict(_pair(path, number, line) for number, line in enumerate(text.splitlines(), 1)
                if line.strip() and not line.lstrip().startswith("#"))


def _pair(path, number: int, line: str) -> tuple[str, str]:
    key, separator, value = line.partition("=")
    key = key.strip()
    if not separator or not KEY.match(key) or key.upper().startswith("TRIVIALCI_"):
        raise BadInput(f"{path}, line {number}: write KEY=VALUE, KEY of letters, digits and '_', "
                       "not starting with a digit or TRIVIALCI_")
    if len(value.encode()) < MIN_VALUE_BYTES:
        raise BadInput(f"{path}, line {number}: the value of {key} is shorter than {MIN_VALUE_BYTES} bytes: "
                       "masking it would blank ordinary text in every log")
    return key, value


def _repository_dirs(directory: Path, repo: str) -> list[Path]:
    """The DIR/NAME directories whose repo file names `repo`."""
    wanted = resolve_repo(repo)
    return [path.parent for path in sorted(directory.glob("*/repo")) if _repo_of(path.parent) == wanted]


def _repo_of(own: Path) -> str:
    _check_directory(own)
    try:
        return resolve_repo(_read_private(own / "repo", 4096).decode("utf-8").strip())
    except UnicodeDecodeError:
        raise BadInput(f"{own / 'repo'} is not UTF-8 text") from None


def _check_directory(path: Path) -> None:
    """Refuse a secrets directory that is a link, a stranger's, or writable by others."""
    try:
        fd = os.open(path, DIRECTORY_FLAGS)
    except OSError as error:
        raise BadInput(f"cannot use the secrets directory {path}: {error.strerror} (it must be a directory, "
                       "not a link)") from None
    try:
        _check_owner_and_mode(path, os.fstat(fd), "directory", 0o022, "700")
    finally:
        os.close(fd)


def _read_private(path, limit: int) -> bytes:
    """The bytes of a regular file, not a link, of this user (or root), that no one else may read or write."""
    try:
        fd = open_regular(path)
    except FileNotFoundError:
        raise
    except OSError as error:
        raise BadInput(f"cannot read the secrets file {path}: {error.strerror} (it must be a regular file, "
                       "not a link)") from None
    with os.fdopen(fd, "rb") as handle:
        _check_owner_and_mode(path, os.fstat(fd), "file", 0o026, "600")
        data = handle.read(limit + 1)
    if len(data) > limit:
        raise BadInput(f"the secrets file {path} is larger than {limit} bytes")
    return data


def _check_owner_and_mode(path, info: os.stat_result, kind: str, forbidden: int, advice: str) -> None:
    if info.st_uid not in (os.geteuid(), 0):
        raise BadInput(f"the secrets {kind} {path} belongs to uid {info.st_uid}, not to this worker's user: chown it")
    if info.st_mode & forbidden:
        raise BadInput(f"the secrets {kind} {path} is open to others (mode {stat.S_IMODE(info.st_mode):o}): "
                       f"chmod {advice} it")


class SecretMask:
    """Replaces every secret value in a build's output by ***, also across the pieces of a long line."""

    def __init__(self, values=()):
        self.values = sorted({v.encode() if isinstance(v, str) else bytes(v) for v in values if v}, key=len,
                             reverse=True)  # the longest first: a secret inside another is masked with it
        self.pattern = re.compile(b"|".join(map(re.escape, self.values))) if self.values else None
        self.longest = len(self.values[0]) if self.values else 0

    def line(self, data: bytes) -> bytes:
        """`data` (a whole line: values hold no newline) with every secret masked."""
        return self.pattern.sub(MASK, data) if self.pattern else data

    def split(self, data: bytes) -> tuple[bytes, bytes]:
        """(what may be written now, masked; the raw tail to keep until more comes) of a piece of a line.

        The tail is the last `longest - 1` bytes: a secret that starts before
        it is whole in `data` already, one that starts in it may go on in the
        next piece.
        """
        if not self.pattern:
            return data, b""
        safe, written, out = max(0, len(data) - (self.longest - 1)), 0, []
        for match in self.pattern.finditer(data):
            if match.start() >= safe:
                break
            out += [data[written:match.start()], MASK]
            written = match.end()
        cut = max(safe, written)
        return b"".join(out) + data[written:cut], data[cut:]
