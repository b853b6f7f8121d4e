"""What a node is told at start: its pipeline, how many scripts at once, its timeouts and chores."""

from dataclasses import dataclass, field
from pathlib import Path

from . import forkserver
from .heartbeat import HEARTBEAT_SECONDS


@dataclass
class NodeConfig:
    pipeline: Path
    jobs: int = 1
    timeout: float = 3600.0
    grace: float = 5.0
    max_attempts: int = 3
    poll: float | None = None  # poll every N seconds instead of trusting inotify
    settle: float = 1.0
    rescan: float = 5.0
    heartbeat: float = HEARTBEAT_SECONDS
    announce: str | None = None  # an event type dropped into its own inbox at start (if it has a script)
    tick: float | None = None  # drop a `tick` event into its own inbox every N seconds (if it has a script)
    advertise: dict = field(default_factory=dict)  # extra TRIVIALCI_* variables, and heartbeat fields
    outbox: Path | None = None  # a worker's: its scripts' events for the hub wait there (see outbox.py)
    fork_server: bool = field(default_factory=forkserver.wanted)  # fork TYPE.py scripts (see forkserver.py)
