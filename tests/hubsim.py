"""The hub's loop in this process, on a real spool, for tests that drive thousands of events.

It claims inbox events in arrival order, runs the shipped pipeline script for each
(runpy, with the environment and stdin a script gets), and records the event in
done/DAY/ or failed/DAY/ under its claim stamp, as spool/record.py names it. The
claim clock is the test's: it moves when the test says, so events fall on the
days a test wants (and prunes have days to remove). What it does not run:
branch_update's and pull_request's git (the kinds come in the event as "kinds"), boot_worker (no
process is started) and prune (tests prune by calling the library, as the CLI does).
"""

import contextlib
import io
import json
import os
import runpy
import shutil
import sys
import time
from pathlib import Path

from trivialci.hub import HubState
from trivialci.hub.verify import compare, fold_files
from trivialci.spool.layout import hub_dir, worker_dir

PIPELINE = Path(__file__).resolve().parent.parent / "pipeline"
SKIPPED = ("boot_worker", "prune")


class SimulatedHub:
    def __init__(self, spool: Path, start: float):
        self.spool, self.clock, self.node = Path(spool), start, hub_dir(spool)
        self.node.create()
        self.handled: list[tuple[str, str, dict]] = []  # (event id, where, payload)

    def advance(self, seconds: float) -> None:
        self.clock += seconds

    def waiting(self) -> list[str]:
        """The inbox in arrival order: emit's names carry the creation time after the type."""
        names = [n for n in os.listdir(self.node.inbox) if n.endswith(".json") and not n.startswith(".")]
        return sorted(names, key=lambda name: (name.split(".", 1)[1], name))

    def handle_next(self) -> bool:
        waiting = self.waiting()
        if not waiting:
            return False
        self.handle_file(waiting[0])
        return True

    def handle_file(self, name: str) -> None:
        """Claim and handle inbox/NAME now, ahead of what arrived before it."""
        self.clock += 0.001
        stamp = _stamp(self.clock)
        event_id = f"{stamp}-{name[:-len('.json')]}"
        payload = json.loads((self.node.inbox / name).read_text())
        where = self._run(name.split(".", 1)[0], payload, event_id)
        day = self.node.root / where / stamp[:10]
        day.mkdir(parents=True, exist_ok=True)
        os.rename(self.node.inbox / name, day / f"{stamp[11:]}-{name}")
        self.handled.append((event_id, where, payload))

    def handle(self, count: int) -> None:
        for _ in range(count):
            if not self.handle_next():
                return

    def drain(self, limit: int = 10_000) -> None:
        for _ in range(limit):
            if not self.handle_next():
                return
        raise AssertionError("the simulated hub did not settle")

    def _run(self, event_type: str, payload: dict, event_id: str) -> str:
        if event_type in SKIPPED:
            return "done"
        environment = {"TRIVIALCI_SPOOL": str(self.spool), "TRIVIALCI_EVENT_ID": event_id, "TRIVIALCI_NODE": "hub",
                       "TRIVIALCI_EVENT": event_type, "TRIVIALCI_NODE_DIR": str(self.node.root),
                       "TRIVIALCI_WORKDIR": str(self.spool.parent / "hubwork")}
        with _environment(environment), _stdin(payload), contextlib.redirect_stdout(io.StringIO()):
            try:
                if event_type in ("branch_update", "pull_request"):
                    _with_kinds(event_type, payload)
                else:
                    runpy.run_path(str(PIPELINE / f"{event_type}.py"), run_name="__main__")
            except SystemExit as end:
                return "done" if end.code in (None, 0) else "failed"
        return "done"


def _with_kinds(event_type: str, payload: dict) -> None:
    """pipeline/branch_update.py's (or pull_request.py's) main, with the kinds the event names instead of a
    mirror's .trivialci/."""
    script = runpy.run_path(str(PIPELINE / f"{event_type}.py"), run_name=event_type)
    kinds = payload.pop("kinds")  # the simulation's own field: the event the script checks has none
    script["main"].__globals__["declared_kinds"] = lambda repo, sha: kinds
    try:
        script["main"](payload)
    except script["TrivialCiError"] as refusal:  # as the script's own __main__ says it
        sys.exit(f"refused: {refusal}")


def _stamp(seconds: float) -> str:
    whole, fraction = divmod(int(round(seconds * 1e6)), 1_000_000)
    return time.strftime("%Y-%m-%dT%H%M%S", time.gmtime(whole)) + f".{fraction:06d}"


@contextlib.contextmanager
def _environment(values: dict):
    saved = {name: os.environ.get(name) for name in [*values, "TRIVIALCI_STORE", "TRIVIALCI_PIPELINE_SOURCE"]}
    os.environ.update(values)
    for name in ("TRIVIALCI_STORE", "TRIVIALCI_PIPELINE_SOURCE"):
        os.environ.pop(name, None)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@contextlib.contextmanager
def _stdin(payload: dict):
    saved = sys.stdin
    sys.stdin = io.StringIO(json.dumps(payload))
    try:
        yield
    finally:
        sys.stdin = saved


def beat(spool: Path, worker: str, pid: int, alive: bool) -> None:
    """A worker's heartbeat file, fresh or long stale (the hub reads its mtime and its pid@host)."""
    node = worker_dir(spool, worker)
    node.create()
    node.heartbeat.write_text(json.dumps({"pid": pid, "host": "sim", "kind": "build"}))
    if not alive:
        old = time.time() - 3600
        os.utime(node.heartbeat, (old, old))


def assert_rebuilt_equals_live(spool: Path) -> None:
    """`trivialci state verify` finds no difference, and state/ deleted and rebuilt holds the same files."""
    verdict = compare(spool)
    assert verdict.differences == [], "\n".join(verdict.differences)
    live = fold_files(spool / "state")
    idle = {path[len("workers/"):-len(".json")] for path, record in live.items()
            if path.startswith("workers/") and record.get("state") == "idle"}
    assert {path[len("idle/"):] for path in live if path.startswith("idle/")} == idle, "state/idle/ indexes them"
    shutil.rmtree(spool / "state")
    HubState.open(spool)
    assert fold_files(spool / "state") == live
