"""Fuzzing a running CI: random and mutated events into a real hub and the worker it booted.

A real origin is pushed and built first (PASSED); then, for TRIVIALCI_FUZZ_SECONDS
(default 60), events made by tests/fuzzing.py from a fixed seed
(TRIVIALCI_FUZZ_SEED, default 1) are dropped into the hub's and the worker's
inboxes: valid events of each type of the example flow with fields made
hostile (wrong types, huge numbers, 1e999, NaN, negative, `../` and absolute
paths, control characters, long strings, deep nesting, missing and extra
fields, unicode), broken bodies, odd names and special files. Then, once the
spool is quiet:

- every dropped event is recorded exactly once, in done/ or failed/, and
  nothing is left in any inbox/ or work/;
- nothing outside the spool, the two workdirs and the store changed: the
  origin, and decoy `victim/` directories at every level above them that the
  `../` and absolute paths aim at;
- no node logged an error of its own loop;
- a real push still builds PASSED, and once the nodes stop no process is left.

A longer run, for local use:

    TRIVIALCI_FUZZ_SECONDS=900 TRIVIALCI_FUZZ_SEED=7 .venv/bin/pytest -q -s tests/test_fuzz.py

(-s shows the summary: events by outcome, and the mutation classes behind each problem).
"""

import collections
import hashlib
import json
import os
import re
import signal
import stat
import time
from pathlib import Path

import pytest
from conftest import leftovers, outcomes, run_cli, wait_for
from fuzzing import Fuzzer, templates
from gitrepo import Origin

import trivialci
from trivialci.spool.layout import worker_names
from trivialci.up import local_worker_pids

SECONDS = float(os.environ.get("TRIVIALCI_FUZZ_SECONDS", "60"))
SEED = int(os.environ.get("TRIVIALCI_FUZZ_SEED", "1"))
WORKER = "build-1"
BACKLOG = 40  # events waiting in an inbox before the fuzzer waits for the node
BUILD = "#!/bin/sh\necho \"building $TRIVIALCI_BRANCH\"\necho made > \"$TRIVIALCI_ARTIFACTS/out.txt\"\n"


def victims(sandbox: Path) -> list[Path]:
    """The decoy directories: one beside each level the `../` paths can reach, and one in ciwork/."""
    return [level / "victim" for level in [*sandbox.parents][:5][::-1] + [sandbox, sandbox / "ciwork"]]


@pytest.fixture
def sandbox(tmp_path) -> Path:
    """tmp_path/x1/x2/x3/x4/sandbox: deep enough that MAX_UP `../` from any root stay in tmp_path."""
    sandbox = tmp_path / "x1" / "x2" / "x3" / "x4" / "sandbox"
    for victim in victims(sandbox):
        level = victim.parent
        (victim / "keep").mkdir(parents=True)
        (victim / "secret.txt").write_text(f"the secret of {level.name}\n")
        (victim / "keep" / "deep.txt").write_text("do not delete\n")
    return sandbox


class CI:
    """A hub on the shipped pipeline with a directory store; it boots its worker for the first job."""

    def __init__(self, sandbox: Path, start_node):
        self.sandbox, self.spool, self.store = sandbox, sandbox / "spool", sandbox / "store"
        self.workdirs = [sandbox / "ciwork" / "hub", sandbox / "ciwork" / WORKER]
        self.origin = Origin(sandbox / "repo")
        self.hub = start_node("hub", "--spool", self.spool, "--store", f"file://{self.store}",
                              "--workdir", self.workdirs[0], "--grace", "1", "--timeout", "300",
                              env={"TRIVIALCI_BOOT_HOSTS": "build=local,*=none"})

    def node_root(self, node: str) -> Path:
        return self.spool if node == "hub" else self.spool / "workers" / node

    def nodes(self) -> list[Path]:
        return [self.spool] + [self.spool / "workers" / name for name in worker_names(self.spool)]

    def push(self, message: str) -> str:
        self.origin.commit({".trivialci/build": BUILD}, message=message, push=False)
        (self.origin.work / ".trivialci" / "build").chmod(0o755)
        sha = self.origin.commit({}, message=message)
        trivialci.emit("branch_update", {"repo": str(self.origin.bare), "branch": "main", "old": None, "new": sha},
                       spool=self.spool)
        return sha

    def passed(self, sha: str) -> dict | None:
        for path in self.store.glob("jobs/*/job.json"):
            job = json.loads(path.read_text())
            if job.get("sha") == sha and job.get("status") == "PASSED":
                return job
        return None

    def stop(self) -> None:
        self.hub.stop()
        for pid in local_worker_pids(self.spool):
            os.kill(pid, signal.SIGTERM)
        wait_for(lambda: not local_worker_pids(self.spool), timeout=60, message="the workers to stop")


def snapshot(top: Path, allowed: list[Path]) -> dict[str, tuple]:
    """Every entry under `top` but the allowed roots and the nodes' stderr files: type, mode, size, content hash."""
    found = {}
    for directory, names, files in os.walk(top):
        names[:] = [n for n in names if Path(directory) / n not in allowed]
        for name in names + files:
            path = Path(directory) / name
            if path.parent == top and name.startswith("node-") and name.endswith(".stderr"):
                continue
            found[str(path.relative_to(top))] = entry(path)
    return found


def entry(path: Path) -> tuple:
    info = path.lstat()
    digest = hashlib.sha256(path.read_bytes()).hexdigest() if stat.S_ISREG(info.st_mode) else None
    return stat.S_IFMT(info.st_mode), stat.S_IMODE(info.st_mode), info.st_size if digest else None, digest


def plant(drop, decoys: list[Path], before: dict[str, tuple], top: Path) -> None:
    """Files where the drop's paths lead (victim/fzSERIAL/), known to the snapshot: deleting them is caught."""
    for victim in decoys:
        planted = victim / f"fz{drop.serial}" / "planted.txt"
        planted.parent.mkdir()
        planted.write_text("planted\n")
        for path in (planted.parent, planted):
            before[str(path.relative_to(top))] = entry(path)


def place(drop, root: Path, decoy: Path, serial: int) -> None:
    """Drop one event as an attacker with write access to the spool would: staged in tmp/, renamed in."""
    staged = root / "tmp" / f".fuzz-{serial}"
    if drop.special == "symlink":
        os.symlink(decoy, staged)
    elif drop.special == "hardlink":
        os.link(decoy, staged)
    elif drop.special == "fifo":
        os.mkfifo(staged)
    elif drop.special == "directory":
        staged.mkdir()
    else:
        staged.write_bytes(drop.body)
    os.rename(staged, root / "inbox" / drop.name)


def fuzz(ci: CI, fuzzer: Fuzzer, seconds: float, before: dict[str, tuple]) -> dict[str, dict[str, str]]:
    """Drop events until `seconds` have passed, each node's in the fuzzer's order, none into a full inbox;
    {node root: {inbox name: label}}. Files planted on the way join `before`."""
    dropped: dict[str, dict[str, str]] = collections.defaultdict(dict)
    waiting: dict[str, collections.deque] = collections.defaultdict(collections.deque)
    decoy = ci.sandbox / "victim" / "secret.txt"
    deadline, drop = time.monotonic() + seconds, fuzzer.next()
    while time.monotonic() < deadline:
        for node, queue in waiting.items():
            root = ci.node_root(node)
            while queue and len(os.listdir(root / "inbox")) < BACKLOG:
                placed = queue.popleft()
                if placed.plant:
                    plant(placed, victims(ci.sandbox), before, ci.sandbox.parents[4])
                place(placed, root, decoy, placed.serial)
                dropped[str(root)][placed.name] = placed.label
        if len(waiting[drop.node]) >= BACKLOG:
            time.sleep(0.02)  # pacing the producer (that node is busy), not waiting for a result
            continue
        waiting[drop.node].append(drop)
        drop = fuzzer.next()
    return dropped


def quiet_for(ci: CI, seconds: float):
    """A condition: every inbox/ and work/ has been empty for `seconds`."""
    since = [None]

    def condition() -> bool:
        if any(leftovers(root) for root in ci.nodes()):
            since[0] = None
            return False
        since[0] = since[0] or time.monotonic()
        return time.monotonic() - since[0] >= seconds
    return condition


def unrecorded(ci: CI, dropped) -> list[str]:
    problems = []
    for root, names in dropped.items():
        ended = outcomes(Path(root))
        for name, label in names.items():
            if ended.get(name) not in (["done"], ["failed"]):
                problems.append(f"{label}: {name!r} ended in {ended.get(name)} on {Path(root).name}")
    return problems


def changed_outside(before: dict, after: dict, labels: dict[int, str]) -> list[str]:
    problems = []
    for path in sorted(set(before) | set(after)):
        if before.get(path) != after.get(path):
            what = "made" if path not in before else "removed" if path not in after else "changed"
            serial = re.search(r"fz(\d+)", path)
            problems.append(f"{_cause(labels.get(int(serial.group(1)), '') if serial else '')}: {what} {path}")
    return problems


def _cause(label: str) -> str:
    """The mutation that made the path (a `../` or an absolute path) out of an event's label."""
    event_type, _, mutations = label.partition(".")
    paths = [m for m in mutations.split("+") if m.endswith((":dotdot", ":absolute"))]
    return f"{event_type}.{paths[-1]}" if paths else label or "unknown"


def node_errors(ci: CI) -> list[str]:
    logs = {"hub": ci.hub.stderr()} | {p.name: p.read_text(errors="replace") for p in ci.spool.glob("workers/*.log")}
    return [f"node log of {node}: {line}" for node, text in logs.items() for line in text.splitlines()
            if "error in the node loop" in line or "Traceback" in line]


def script_tracebacks(ci: CI, dropped) -> collections.Counter:
    """Mutation classes whose script died of a Python exception (a refusal says why in one line instead)."""
    found = collections.Counter()
    for root, names in dropped.items():
        for log in Path(root).glob("failed/*/*.log"):
            name = log.name.split("-", 1)[1][: -len(".log")] + ".json"
            if name in names and "Traceback (most recent call last)" in log.read_text(errors="replace"):
                found[names[name].split("+")[0]] += 1
    return found


def processes_under(top: Path) -> list[str]:
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cwd = os.readlink(f"/proc/{pid}/cwd")
            command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z" and (cwd.startswith(str(top)) or str(top) in command):
            found.append(f"pid {pid} in {cwd}: {command[:200]}")
    return found


def summary(dropped, ci: CI, tracebacks, problems) -> str:
    counts = collections.Counter()
    for root, names in dropped.items():
        for name, places in outcomes(Path(root)).items():
            counts[places[0] if len(places) == 1 else "twice"] += name in names
    lines = [f"seed {SEED}, {SECONDS:g} s: {sum(map(len, dropped.values()))} events; outcomes {dict(counts)}",
             f"script tracebacks by mutation: {dict(tracebacks.most_common())}"]
    classes = collections.Counter(problem.split(":")[0] for problem in problems)
    return "\n".join(lines + [f"problems by mutation: {dict(classes.most_common())}"] + problems[:200])


def test_thousands_of_hostile_events_end_in_done_or_failed_and_touch_nothing_outside(sandbox, start_node):
    ci = CI(sandbox, start_node)
    try:
        first = ci.push("first")
        job = wait_for(lambda: ci.passed(first), timeout=120, message="the first push to build")
        fuzzer = Fuzzer(SEED, templates(job, str(ci.origin.bare), WORKER, time.time()), sandbox, WORKER)
        watched = [sandbox.parents[4], [ci.spool, ci.store, *ci.workdirs]]
        before = snapshot(*watched)

        dropped = fuzz(ci, fuzzer, SECONDS, before)
        wait_for(quiet_for(ci, 3.0), timeout=300, interval=0.2, message="every inbox/ and work/ to stay empty")

        labels = {int(m.group(1)): label for names in dropped.values() for name, label in names.items()
                  if (m := re.search(r"fz(\d+)", name))}
        problems = [f"left: {entry}" for root in ci.nodes() for entry in leftovers(root)]
        problems += unrecorded(ci, dropped) + changed_outside(before, snapshot(*watched), labels) + node_errors(ci)
        last = ci.push("after the fuzz")
        try:
            wait_for(lambda: ci.passed(last), timeout=120, message="a real push after the fuzz to build")
        except AssertionError as error:
            shown = run_cli("jobs", "--spool", ci.spool).stdout.replace("\n", " | ")
            problems.append(f"final push: {error}; trivialci jobs: {shown}")
    finally:
        ci.stop()
    try:  # a stopped worker exits a moment after it removed its heartbeat
        wait_for(lambda: not processes_under(sandbox.parents[4]), timeout=30, message="every process to end")
    except AssertionError:
        problems += [f"left running: {process}" for process in processes_under(sandbox.parents[4])]
    report = summary(dropped, ci, script_tracebacks(ci, dropped), problems)
    print(report)
    assert not problems, report
