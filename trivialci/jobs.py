"""Jobs: one build of one sha of one branch by one worker kind, and the grammar of each of its fields.

A job id is JOB = YYYYmmddTHHMMSSZ-xxxxxx (the UTC time it was queued, then 6
random hex digits): ids sort by time, so the newest jobs are found by listing,
never by reading every record. A job's status is one of the words below,
stored as that string everywhere (events, state/, the artifact store).

Every field of a job that arrives in an event is checked here, one function
per grammar (`check_job_id`, `check_kind`, `check_status`, `check_attempt`,
`check_timeout`, `check_params`, `check_time`, `check_reason`,
`check_request_id`, `check_stage`, `check_upstream`, `check_plan`): each
returns the value, or raises BadInput saying what was wrong (`is_job_id` and
`is_kind` only answer yes or no). Worker names are checked by
spool.layout.check_node_name, git's names by git.commands. The bounds are docs/protocol.md's ("Fields of the flow").
"""

import calendar
import enum
import math
import os
import re
import secrets
import time

from .errors import BadInput

JOB_ID = re.compile(r"\d{8}T\d{6}Z-[0-9a-f]{6}\Z")
KIND = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,47}\Z")  # 48 at most: KIND-N is still a worker name (63)
PARAM_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}\Z")  # becomes TRIVIALCI_PARAM_NAME in the build
REQUEST_ID = re.compile(r"[A-Za-z0-9]{1,64}\Z")
TIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?Z\Z")
MAX_ATTEMPT = 1000  # a job lost this many times is not queued again
BUILD_TIMEOUT, MIN_BUILD_TIMEOUT, MAX_BUILD_TIMEOUT = 3600.0, 1.0, 86400.0  # seconds: the default, 1 s .. 24 h
MAX_PARAMS, MAX_PARAM_CHARS = 32, 1024
MAX_REASON_CHARS = 4096
MAX_STAGE = 9999  # .trivialci/NN-KIND: NN is 1-4 digits
MAX_UPSTREAM = 64  # jobs one job may take artifacts from
STAGE_FILE = re.compile(r"(\d+)-(.*)\Z", re.S)  # .trivialci/NN-KIND
STAGE_FIELDS = ("push", "stage", "upstream", "plan", "rebuild_of")  # a job of a push in stages (hub/stages.py)


class JobStatus(str, enum.Enum):
    HELD = "HELD"  # untrusted (a fork's pull request): never dispatched until `trivialci approve JOB`
    WAITING = "WAITING"  # of a later stage of its push: queued once every job it takes artifacts from PASSED
    QUEUED = "QUEUED"  # waiting in state/queue/KIND/ for a worker
    STARTING = "STARTING"  # handed to a worker, which is fetching and checking out
    BUILDING = "BUILDING"  # the repository's .trivialci/KIND runs
    PASSED = "PASSED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"  # by `trivialci cancel`, or its branch was deleted
    SUPERSEDED = "SUPERSEDED"  # a newer push of its branch replaced it
    LOST = "LOST"  # its worker stopped answering; the job is queued again as the next attempt
    UNSTORED = "UNSTORED"  # it ended, but the store refused its record, log or files; "verdict" says how it ended
    SKIPPED = "SKIPPED"  # never run: a job of an earlier stage of its push did not pass ("reason" says which)

    @property
    def final(self) -> bool:
        return self in FINAL


FINAL = {JobStatus.PASSED, JobStatus.FAILED, JobStatus.CANCELLED, JobStatus.SUPERSEDED, JobStatus.UNSTORED,
         JobStatus.SKIPPED}
RUNNING = {JobStatus.STARTING, JobStatus.BUILDING}
UNDISPATCHED = {JobStatus.HELD, JobStatus.QUEUED, JobStatus.WAITING}  # not final, and no worker has them: ended at once


def new_job_id(now: float | None = None) -> str:
    now = time.time() if now is None else now
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now)) + "-" + secrets.token_hex(3)


def is_job_id(text: str) -> bool:
    return bool(JOB_ID.match(text))


def iso_now() -> str:
    now = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now % 1 * 1e3):03d}Z"


def seconds_between(start: str | None, end: str | None) -> float | None:
    """Seconds from one iso_now() string to another, or None when either is missing."""
    if not start or not end:
        return None
    return round(_epoch(end) - _epoch(start), 3)


def _epoch(stamp: str) -> float:
    whole, _, fraction = stamp.rstrip("Z").partition(".")
    return calendar.timegm(time.strptime(whole, "%Y-%m-%dT%H:%M:%S")) + float("0." + (fraction or "0"))


def check_job_id(value) -> str:
    if isinstance(value, str) and JOB_ID.match(value):
        return value
    raise BadInput(f"bad job id {_shown(value)}: a job id is YYYYmmddTHHMMSSZ-xxxxxx, the UTC time it was queued and "
                   "6 lowercase hex digits (e.g. 20261125T025439Z-8aa937)")


def is_kind(text) -> bool:
    return isinstance(text, str) and bool(KIND.match(text))


def check_kind(value) -> str:
    """A worker kind: the name of a file in .trivialci/, and part of a directory and a worker name."""
    if is_kind(value):
        return value
    raise BadInput(f"bad kind {_shown(value)}: a kind is 1-48 ASCII letters, digits, '_' or '-', starting with a "
                   "letter or digit (the name of an executable file in .trivialci/)")


def check_status(value) -> JobStatus:
    try:
        return JobStatus(value)
    except ValueError:
        raise BadInput(f"bad status {_shown(value)}: one of {', '.join(s.value for s in JobStatus)}") from None


def check_attempt(value) -> int:
    if type(value) is int and 1 <= value <= MAX_ATTEMPT:
        return value
    raise BadInput(f"bad attempt {_shown(value)}: an attempt is an integer from 1 to {MAX_ATTEMPT}")


def check_timeout(value) -> float:
    """A build's time limit in seconds."""
    if _is_number(value) and MIN_BUILD_TIMEOUT <= value <= MAX_BUILD_TIMEOUT:
        return float(value)
    raise BadInput(f"bad build timeout {_shown(value)}: a number of seconds from {MIN_BUILD_TIMEOUT:g} to "
                   f"{MAX_BUILD_TIMEOUT:g} (24 h)")


def check_params(value) -> dict:
    """A job's parameters: a flat object of at most MAX_PARAMS names, each a string, number or boolean.

    Each becomes TRIVIALCI_PARAM_NAME (upper-cased) in the build's environment,
    so names that differ only in case are refused; "timeout" is the build's
    time limit and must pass check_timeout. None (no params) is {}.
    """
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise BadInput(f"bad params {_shown(value)}: params are a JSON object of NAME: value")
    if len(value) > MAX_PARAMS:
        raise BadInput(f"bad params: {len(value)} entries, at most {MAX_PARAMS}")
    for name, item in value.items():
        _check_param(name, item)
    if len({name.upper() for name in value}) < len(value):
        raise BadInput(f"bad params {sorted(value)}: two names differ only in upper case (both would be "
                       "TRIVIALCI_PARAM_NAME)")
    if "timeout" in value:
        check_timeout(value["timeout"])
    return value


def _check_param(name: str, value) -> None:
    if not PARAM_NAME.match(name):
        raise BadInput(f"bad parameter name {_shown(name)}: a letter or '_', then letters, digits or '_' (at most 64)")
    if isinstance(value, str):
        check_text(value, f"parameter {name}", MAX_PARAM_CHARS)
    elif not (isinstance(value, bool) or _is_number(value)):
        raise BadInput(f"bad parameter {name} = {_shown(value)}: a string, a finite number or a boolean")


def check_time(value) -> str:
    """A UTC time as iso_now() writes it: YYYY-MM-DDTHH:MM:SS[.fff]Z."""
    if isinstance(value, str) and TIME.match(value):
        try:
            _epoch(value)
            return value
        except ValueError:
            pass
    raise BadInput(f"bad time {_shown(value)}: a UTC time YYYY-MM-DDTHH:MM:SS.mmmZ (e.g. 2026-11-25T02:54:39.223Z)")


def check_reason(value) -> str:
    """Why a job ended or is stopped, for a person: text of at most MAX_REASON_CHARS."""
    return check_text(value, "reason", MAX_REASON_CHARS)


def check_stage(value) -> int:
    """The stage of a job: NN of .trivialci/NN-KIND (0 for a file without a number)."""
    if type(value) is int and 0 <= value <= MAX_STAGE:
        return value
    raise BadInput(f"bad stage {_shown(value)}: an integer from 0 to {MAX_STAGE} (NN of .trivialci/NN-KIND)")


def check_upstream(value) -> list:
    """The jobs whose artifacts a job takes: a list of {"job": JOB, "kind": KIND}, each kind once (it names the
    directory $TRIVIALCI_UPSTREAM/KIND/)."""
    return _job_list(value, "upstream", {"job": check_job_id, "kind": check_kind})


def check_plan(value) -> list:
    """Every job of a push as it was planned: a list of {"job": JOB, "kind": KIND, "stage": N}, each kind once."""
    return _job_list(value, "plan", {"job": check_job_id, "kind": check_kind, "stage": check_stage})


def _job_list(value, what: str, checks: dict) -> list:
    shape = "{" + ", ".join(f'"{name}": {name.upper()}' for name in checks) + "}"
    if not isinstance(value, list) or len(value) > MAX_UPSTREAM + 1:
        raise BadInput(f"bad {what} {_shown(value)}: a list of at most {MAX_UPSTREAM + 1} {shape}")
    if not all(isinstance(item, dict) for item in value):
        raise BadInput(f"bad {what} {_shown(value)}: each item is an object {shape}")
    checked = [check_fields(item, checks, tuple(checks), f"{what} job") for item in value]
    kinds = [item["kind"] for item in checked]
    if len(set(kinds)) < len(kinds):
        raise BadInput(f"bad {what} {_shown(value)}: a kind appears twice (a kind runs once in a push)")
    return checked


def stage_of(name: str) -> tuple[int, str | None]:
    """(stage, kind) of a file name of .trivialci/: NN-KIND is KIND in stage NN, any other name stage 0; kind None
    when the name is no kind. BadInput for a stage number of more digits than MAX_STAGE has."""
    numbered = STAGE_FILE.match(name)
    if not numbered:
        return 0, name if is_kind(name) else None
    if len(numbered.group(1)) > len(str(MAX_STAGE)):
        raise BadInput(f".trivialci/{name[:60]}: a stage number has at most {len(str(MAX_STAGE))} digits")
    return int(numbered.group(1)), numbered.group(2) if is_kind(numbered.group(2)) else None


def entry_name(directory, stage: int, kind: str) -> str:
    """The name of the file in `directory` (a checkout's .trivialci/) that runs `kind` in `stage`; `kind` when none
    does (the caller says it is missing)."""
    try:
        names = sorted(os.listdir(directory))
    except OSError:
        return kind
    for name in names:
        try:
            if stage_of(name) == (stage, kind):
                return name
        except BadInput:
            continue
    return kind


def check_request_id(value) -> str:
    """The id of a `trivialci build` request (it names a file in state/requests/)."""
    if isinstance(value, str) and REQUEST_ID.match(value):
        return value
    raise BadInput(f"bad request id {_shown(value)}: 1-64 ASCII letters and digits")


def check_text(value, what: str, max_chars: int) -> str:
    """Text a person reads (in a terminal too): no control characters but tab and newline, bounded."""
    if not isinstance(value, str):
        raise BadInput(f"bad {what} {_shown(value)}: it must be a string")
    if len(value) > max_chars:
        raise BadInput(f"bad {what} {_shown(value)}: {len(value)} characters, at most {max_chars}")
    if any((ord(c) < 0x20 and c not in "\t\n") or 0x7F <= ord(c) < 0xA0 for c in value):
        raise BadInput(f"bad {what} {_shown(value)}: it holds control characters")
    return value


def optional(check):
    """`check`, letting None (the field cleared, or not given) through."""
    return lambda value: None if value is None else check(value)


def check_fields(payload: dict, checks: dict, required, what: str, strict: bool = True) -> dict:
    """`payload` with every field passed through its check (keys starting with "_" belong to the node, and stay).

    strict: a field that is not in `checks` refuses the payload (it would be
    stored unchecked); otherwise such a field is left out of what is returned.
    """
    unknown = sorted(key for key in payload if not key.startswith("_") and key not in checks)
    if unknown and strict:
        raise BadInput(f"bad {what}: unknown field {_shown(unknown[0])} (known: {', '.join(checks)})")
    for key in required:
        if key not in payload:
            checks[key](None)  # refused with the field's own message
    return {key: (checks[key](value) if key in checks else value) for key, value in payload.items()
            if key not in unknown}


def _is_number(value) -> bool:
    """An int, or a finite float; not a boolean (True is an int to Python, not a number to a person)."""
    if isinstance(value, bool):
        return False
    return isinstance(value, int) or (isinstance(value, float) and math.isfinite(value))


def _shown(value, limit: int = 80) -> str:
    """A value in a message: repr, cut short (a refused value may be 64 KiB of anything)."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."
