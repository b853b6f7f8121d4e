"""What one job may leave on the worker's disk and in the store: its log and its artifacts, by size.

    TRIVIALCI_MAX_LOG_BYTES        (worker --max-log-bytes, default 50M): the build's log is cut there,
                                   with a line saying so; the build runs on, and is recorded with its result
    TRIVIALCI_MAX_ARTIFACT_BYTES   (worker --max-artifact-bytes, default 1G): artifacts over it, all
                                   together, are not uploaded; the job's record and log say why

Sizes are bytes, or a number with K, M or G (powers of 1024). The worker sets both
variables for its scripts from its options; a script reads them with from_environment().
"""

import os
import re
import stat
from pathlib import Path

from ..errors import BadInput

MAX_LOG_ENV = "TRIVIALCI_MAX_LOG_BYTES"
MAX_ARTIFACTS_ENV = "TRIVIALCI_MAX_ARTIFACT_BYTES"
DEFAULT_MAX_LOG = "50M"
DEFAULT_MAX_ARTIFACTS = "1G"
_SIZE = re.compile(r"(\d{1,15})([KMG]?)i?B?\Z", re.IGNORECASE)
_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30}


def parse_size(text: str, what: str) -> int:
    """Bytes from `50M`, `1G`, `4096`; BadInput that says how to write it otherwise."""
    match = _SIZE.match(str(text).strip())
    if not match or int(match.group(1)) < 1:
        raise BadInput(f"bad {what} {text!r}: write a size in bytes, or with K, M or G (e.g. 50M, 1G)")
    return int(match.group(1)) * _UNITS[match.group(2).upper()]


def from_environment(env=os.environ) -> tuple[int, int]:
    """(log limit, artifacts limit) in bytes, from the environment the worker gives its scripts."""
    return (parse_size(env.get(MAX_LOG_ENV) or DEFAULT_MAX_LOG, MAX_LOG_ENV),
            parse_size(env.get(MAX_ARTIFACTS_ENV) or DEFAULT_MAX_ARTIFACTS, MAX_ARTIFACTS_ENV))


def artifacts_refusal(directory: Path, limit: int) -> str | None:
    """Why the artifacts in `directory` are not uploaded (over `limit` bytes together), or None.

    Counts what put_tree would upload: regular files, links not followed; it stops
    counting as soon as the limit is passed, so a huge tree costs no more than that.
    """
    if os.path.islink(directory):
        return None  # the upload refuses a link in the artifacts directory's place anyway; never walk its target
    total = 0
    for parent, _, names in os.walk(directory):
        for name in names:
            try:
                info = os.lstat(os.path.join(parent, name))
            except OSError:
                continue
            if stat.S_ISREG(info.st_mode):
                total += info.st_size
                if total > limit:
                    return (f"artifacts refused: they hold more than {limit} bytes ({MAX_ARTIFACTS_ENV}, the worker's "
                            f"--max-artifact-bytes); none were uploaded")
    return None


def advertised(max_log: str, max_artifacts: str) -> dict:
    """The worker's options as it advertises them to its scripts (checked here, at start)."""
    return {"max_log_bytes": parse_size(max_log, "--max-log-bytes"),
            "max_artifact_bytes": parse_size(max_artifacts, "--max-artifact-bytes")}
