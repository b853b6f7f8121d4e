"""Safe git: how TrivialCi calls git with names and URLs that come from event files.

Payloads are untrusted (anyone who can write the spool can drop one), so:

- git is run with an argument list, never through a shell, and with
  `--end-of-options` before revisions, URLs and paths wherever git accepts it,
  so that nothing given can be read as an option;
- its environment has GIT_TERMINAL_PROMPT=0 (never ask for a password),
  GIT_ALLOW_PROTOCOL=file:git:http:https:ssh (git itself refuses `ext::`,
  `fd::` and every other remote helper) and LC_ALL=C (messages we can read);
  it runs in a session of its own, without a terminal, and on a timeout its
  whole process group (ssh, upload-pack...) is killed;
- branch names pass `check_branch`, repository URLs `check_repo`, commit ids
  `check_sha` before they reach git.

Errors are GitError (git failed or could not be run: exit status 4) or
BadInput (a name, URL or id was refused: exit status 2), with a message for a
person.
"""

import hashlib
import os
import re
import signal
import subprocess

from ..errors import BadInput, TrivialCiError

ALLOWED_PROTOCOLS = "file:git:http:https:ssh"
GIT_ENV = {"GIT_TERMINAL_PROMPT": "0", "GIT_ALLOW_PROTOCOL": ALLOWED_PROTOCOLS, "LC_ALL": "C"}
URL_SCHEMES = {"file", "git", "http", "https", "ssh", "git+ssh", "ssh+git"}
MAX_BRANCH_BYTES = 255
MAX_REPO_BYTES = 4096
SHA = re.compile(r"[0-9a-f]{40}([0-9a-f]{24})?\Z")
REMOTE_HELPER = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*::")  # TRANSPORT::ADDRESS runs git-remote-TRANSPORT
URL_WITH_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*)://([^/]*)")


class GitError(TrivialCiError):
    """git failed, or could not be run; the message carries what git said."""

    exit_code = 4


def run_git(args: list[str], cwd=None, timeout: float = 600) -> str:
    """Run `git ARGS` and return its stdout as text (bytes that are not UTF-8 kept as surrogates)."""
    return run_git_bytes(args, cwd, timeout).decode("utf-8", "surrogateescape")


def run_git_bytes(args: list[str], cwd=None, timeout: float = 600) -> bytes:
    """Run `git ARGS` and return its stdout as bytes; GitError unless it exits 0."""
    argv = ["git", *args]
    try:
        process = subprocess.Popen(argv, cwd=cwd, env={**os.environ, **GIT_ENV}, stdin=subprocess.DEVNULL,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    except FileNotFoundError:
        if cwd is not None and not os.path.isdir(cwd):
            raise GitError(f"cannot run git in {cwd}: there is no such directory") from None
        raise GitError("git is not installed (or not on PATH): install git and try again") from None
    except OSError as error:
        raise GitError(f"cannot run git in {cwd or os.getcwd()}: {error.strerror or error}") from None
    out, err = _communicate(process, argv, timeout)
    if process.returncode != 0:
        raise GitError(f"`{_shown(argv)}` failed (exit status {process.returncode}): {_last_lines(err)}")
    return out


def _communicate(process: subprocess.Popen, argv: list[str], timeout: float) -> tuple[bytes, bytes]:
    """Wait for git; past the timeout, kill its whole group (it may have started ssh or upload-pack)."""
    try:
        return process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_group(process.pid)
        process.communicate()
        raise GitError(f"`{_shown(argv)}` took more than {timeout:g} s and was stopped: "
                       "is the repository reachable?") from None
    except BaseException:
        _kill_group(process.pid)
        process.wait()
        raise


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _shown(argv: list[str], limit: int = 200) -> str:
    text = " ".join(argv)
    return text if len(text) <= limit else text[:limit] + "..."


def _last_lines(stderr: bytes, lines: int = 3) -> str:
    """What git said, in one line: its fatal:/error: lines if any (the advice after them says less)."""
    said = [line.strip() for line in stderr.decode("utf-8", "replace").splitlines() if line.strip()]
    errors = [line for line in said if line.startswith(("fatal:", "error:"))]
    return " / ".join((errors or said)[-lines:]) or "git said nothing"


def check_branch(name: str) -> str:
    """`name` if git accepts it as a branch name (`git check-ref-format --branch`) and it is safe to pass on.

    Refused as well: names that start with '-' (an option to many programs),
    that hold control characters or bytes that are not UTF-8, that are longer
    than 255 bytes, and `@{-N}`-style names that git would expand.
    """
    _check_branch_text(name)
    problem = _ref_format_problem(BRANCH_REFS + name)
    if problem or name == "HEAD":
        raise BadInput(f"bad branch name {name!r}: git does not accept it as a branch name "
                       f"({problem or 'HEAD is no branch name'}; see `git help check-ref-format`)")
    return name


BRANCH_REFS = "refs/heads/"
_NOT_IN_REFS = re.compile(r"[\x00-\x20\x7f~^:?*\[\\]")


def _ref_format_problem(ref: str) -> str | None:
    """Why git's check-ref-format refuses `ref`, by the rules of `git help check-ref-format`; None if it accepts it.

    The rules are git's own (refs.c): checking them here spares a git process
    on each event that names a branch (the hub's branch_update, the worker's
    start_work: a few ms each on the push's path). tests/test_git.py holds
    them against git's answers for many generated names.
    """
    if (bad := _NOT_IN_REFS.search(ref)) is not None:
        return f"it holds {bad.group()!r}"
    for text in ("..", "@{"):
        if text in ref:
            return f"it holds {text!r}"
    if ref.endswith("."):
        return "it ends with '.'"
    for component in ref.split("/"):
        if not component:
            return "it starts or ends with '/' or holds '//'"
        if component.startswith("."):
            return "a part between slashes starts with '.'"
        if component.endswith(".lock"):
            return "a part between slashes ends with '.lock'"
    return None


def _check_branch_text(name: str) -> None:
    """The checks that need no git, made before the name is given to git at all."""
    if not isinstance(name, str) or not name:
        raise BadInput(f"bad branch name {name!r}: a branch name is a non-empty string")
    _check_text(name, "branch name", MAX_BRANCH_BYTES, "a branch name must not start with '-'")


def check_repo(url: str) -> str:
    """`url` if it names a repository git may fetch from: a path, file://, git://, http(s)://, ssh:// or user@host:path.

    Refused: the empty string, control characters, a leading '-', remote
    helpers (`ext::...` runs a command, `fd::...` uses a file descriptor) and
    other URL schemes, and hosts that start with '-' (ssh would read them as
    an option).
    """
    if not isinstance(url, str) or not url:
        raise BadInput("bad repository: give a path or a URL (https://, ssh://, user@host:path, file://)")
    _check_repo_text(url)
    if REMOTE_HELPER.match(url):
        raise BadInput(f"bad repository {url!r}: remote helpers (TRANSPORT::ADDRESS, e.g. ext::) are refused; "
                       "give a path or an https://, ssh:// or file:// URL (write ./NAME for a local path)")
    _check_host(url)
    return url


def _check_repo_text(url: str) -> None:
    _check_text(url, "repository", MAX_REPO_BYTES, f"it must not start with '-' (write ./{url} for a local path)")


def _check_text(value: str, what: str, max_bytes: int, no_dash: str) -> None:
    """What git would read as an option, control characters, and too many bytes: refused before git sees them."""
    if value.startswith("-"):
        raise BadInput(f"bad {what} {value!r}: {no_dash}")
    if _has_control_characters(value):
        raise BadInput(f"bad {what} {value!r}: it holds control characters")
    if len(_utf8(value, what)) > max_bytes:
        raise BadInput(f"bad {what} {value[:40]!r}...: longer than {max_bytes} bytes")


def _check_host(url: str) -> None:
    """The scheme of a URL must be one git may use, and no host may look like an option."""
    match = URL_WITH_SCHEME.match(url)
    if match:
        scheme, authority = match.group(1).lower(), match.group(2)
        if scheme not in URL_SCHEMES:
            raise BadInput(f"bad repository {url!r}: the scheme {scheme}:// is refused; use one of "
                           f"{', '.join(sorted(URL_SCHEMES))}")
        host = authority.rpartition("@")[2]
    else:
        host = url.partition(":")[0].rpartition("@")[2] if _is_scp_like(url) else ""
    if host.startswith("-"):
        raise BadInput(f"bad repository {url!r}: its host must not start with '-'")


def check_sha(sha: str) -> str:
    """`sha` in lowercase if it is a full commit id (40 hex digits, or 64 for SHA-256 repositories)."""
    if isinstance(sha, str) and SHA.match(sha.lower()):
        return sha.lower()
    raise BadInput(f"bad commit id {sha!r}: give the full id, 40 (or 64) hexadecimal digits")


def resolve_repo(url: str) -> str:
    """`url` checked, with a local path made absolute (so that it means the same from any directory)."""
    check_repo(url)
    if "://" in url or _is_scp_like(url):
        return url
    return os.path.abspath(url)


def repo_key(repo: str) -> str:
    """A short name for a repository, the same wherever it is computed: sha1(REPO)[:16]."""
    return hashlib.sha1(repo.encode("utf-8", "surrogateescape")).hexdigest()[:16]


def _is_scp_like(url: str) -> bool:
    """Whether git reads `url` as [user@]host:path: a ':' that comes before any '/'."""
    colon, slash = url.find(":"), url.find("/")
    return colon >= 0 and (slash < 0 or colon < slash)


def ls_remote_heads(repo: str, timeout: float = 120) -> dict[str, str]:
    """The branches of a repository and their commit ids, as `git ls-remote --heads` lists them.

    Names are as git gives them (not checked: the caller decides what to do
    with a name that check_branch refuses). git runs in / so that a bare name
    is never read as a remote of the repository we happen to be in.
    """
    output = run_git(["ls-remote", "--heads", "--end-of-options", resolve_repo(repo)], cwd="/", timeout=timeout)
    heads = {}
    for line in output.splitlines():
        sha, _, ref = line.partition("\t")
        if ref.startswith("refs/heads/") and SHA.match(sha):
            heads[ref[len("refs/heads/"):]] = sha
    return heads


def _has_control_characters(text: str) -> bool:
    return any(ord(c) < 0x20 or ord(c) == 0x7F for c in text)


def _utf8(text: str, what: str) -> bytes:
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        raise BadInput(f"bad {what} {text!r}: it is not valid UTF-8") from None
