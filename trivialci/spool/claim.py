"""Claiming: taking an event out of the inbox, safely.

A node claims inbox/NAME by renaming it into its own work/:

    work/<STAMP>-<STEM>.json.<ATTEMPT>@<NODE>     the claimed event
    work/<STAMP>-<STEM>.log                       its script's output, growing
    work/<STAMP>-<STEM>.result.json               written once it is decided

STAMP is the UTC claim time (YYYY-MM-DDTHHMMSS.ffffff) and STEM the event's name
without ".json"; <STAMP>-<STEM> is the event id. Only this node uses these names,
so two claimers never land on one target: one rename wins, the others see
ENOENT. On a network mount a rename can report failure after it happened, so on
any error both ends are stat'ed to learn the truth.

A claimed file is read the way the spool's owner would: lstat first (symlinks,
FIFOs, devices and directories are refused without being opened), then
O_NOFOLLOW|O_NONBLOCK and fstat, within MAX_EVENT_BYTES, one link only.
"""

import os
import re
import stat
import time
import zlib
from dataclasses import dataclass, replace
from pathlib import Path

from . import event
from .event import BadEvent
from .layout import NodeDir

CLAIMED = re.compile(r"(\d{4}-\d\d-\d\dT\d{6}\.\d{6})-(.+)\.json\.(\d+)@([A-Za-z0-9_-]+)\Z")


@dataclass(frozen=True)
class Claim:
    """One event in a node's hands: where its files are now and where they go."""

    node_dir: NodeDir
    stamp: str
    name: str  # the event's file name as the protocol accepts it, e.g. hello.json
    attempt: int = 1
    original_name: str = ""  # what it was called in the inbox, when that was refused

    @property
    def id(self) -> str:
        return f"{self.stamp}-{self.name[:-len('.json')]}"

    @property
    def type(self) -> str:
        return self.name.split(".", 1)[0]

    @property
    def day(self) -> str:
        return self.stamp[:10]

    @property
    def path(self) -> Path:
        return self.node_dir.work / f"{self.id}.json.{self.attempt}@{self.node_dir.node}"

    @property
    def log_path(self) -> Path:
        return self.node_dir.logs / f"{self.id}.log"

    @property
    def result_path(self) -> Path:
        return self.node_dir.work / f"{self.id}.result.json"

    def record_name(self, suffix: str) -> str:
        """Its name in done/DAY/ or failed/DAY/: sorts by the time it was claimed."""
        return f"{self.stamp[11:]}-{self.name[:-len('.json')]}{suffix}"

    def next_attempt(self) -> "Claim":
        return replace(self, attempt=self.attempt + 1)


def parse_claimed(node_dir: NodeDir, file_name: str) -> Claim | None:
    """The Claim a work/ file name stands for, or None for any other file."""
    match = CLAIMED.match(file_name)
    if not match or match.group(4) != node_dir.node:
        return None
    stamp, stem, attempt, _ = match.groups()
    return Claim(node_dir, stamp, stem + ".json", int(attempt))


class StampClock:
    """Claim stamps that strictly increase on this node, so names never collide."""

    def __init__(self):
        self._last = 0

    def next(self) -> str:
        micros = max(int(time.time() * 1e6), self._last + 1)
        self._last = micros
        seconds, fraction = divmod(micros, 1_000_000)
        return time.strftime("%Y-%m-%dT%H%M%S", time.gmtime(seconds)) + f".{fraction:06d}"


def safe_name(name: str) -> str:
    """The name itself when it is valid, else a stand-in that is safe in any path."""
    try:
        event.type_of(name)
        return name
    except BadEvent:
        digest = f"{zlib.crc32(name.encode('utf-8', 'surrogateescape')):08x}"  # the claim stamp keeps it unique
        return f"badname-{digest}.json"


def claim(node_dir: NodeDir, name: str, stamp: str) -> Claim | None:
    """Rename inbox/NAME into work/; the Claim if this node won it, None if another did."""
    taken = Claim(node_dir, stamp, safe_name(name), 1, name)
    source = node_dir.inbox / name
    try:
        os.rename(source, taken.path)
    except OSError:
        if os.path.lexists(taken.path):
            return taken  # the rename happened; only its answer was lost
        if not os.path.lexists(source):
            return None  # another claimer won, or a person removed it
        raise
    return taken


def move(claim_from: Claim, claim_to: Claim) -> Claim:
    """Rename a claimed event to a new claim name (the next attempt)."""
    os.rename(claim_from.path, claim_to.path)
    return claim_to


def open_claimed(claim: Claim) -> tuple[int, bytes, dict]:
    """Open a claimed event as its owner would: its fd (for the script's stdin), body and payload."""
    if claim.original_name and claim.original_name != claim.name:
        event.type_of(claim.original_name)  # raises BadEvent with the reason
    event.type_of(claim.name)
    _refuse_special(os.lstat(claim.path))
    try:
        fd = os.open(claim.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except PermissionError as error:  # its mode will not change by waiting: refuse it, do not hold it
        raise BadEvent(f"this node may not read the event file ({error.strerror}): its writer must leave it "
                       "readable by the spool's user, or by the spool's group (see --group)") from None
    try:
        body = _read_checked(fd)
        return fd, body, event.decode(body)
    except BaseException:
        os.close(fd)
        raise


def _read_checked(fd: int) -> bytes:
    info = os.fstat(fd)
    _refuse_special(info)
    if info.st_nlink > 1:
        raise BadEvent("the event file has other hard links: deliver a copy, not a link")
    if info.st_size > event.MAX_EVENT_BYTES:
        raise BadEvent(f"the event is {info.st_size} bytes, over the limit of {event.MAX_EVENT_BYTES}")
    chunks, size = [], 0
    while size <= event.MAX_EVENT_BYTES and (chunk := os.read(fd, event.MAX_EVENT_BYTES + 1 - size)):
        chunks.append(chunk)
        size += len(chunk)
    os.lseek(fd, 0, os.SEEK_SET)
    return b"".join(chunks)


def _refuse_special(info: os.stat_result) -> None:
    if not stat.S_ISREG(info.st_mode):
        raise BadEvent(f"not a regular file but {_kind(info.st_mode)}: only plain files are events")


def _kind(mode: int) -> str:
    kinds = [(stat.S_ISLNK, "a symbolic link"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISDIR, "a directory"),
             (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket")]
    return next((label for test, label in kinds if test(mode)), "a special file")
