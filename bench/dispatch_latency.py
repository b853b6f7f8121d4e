"""Dispatch latency: from an atomic drop (trivialci.emit) to the first line of the script.

One event at a time goes to an idle hub; the clock starts just before
emit() and stops at the time the script takes as its first action (Python:
time.time(), after `import trivialci` for the kind "pyt", as a pipeline script
does; sh: `date +%s.%N`), which it appends, with its event id, to a
marks file. The hub runs with its fork server (the default) and, as today's
reference, with --no-fork-server. The next event is sent once this one is recorded (its
.result.json is in done/DAY/) and `--gap` has passed.

The baseline is the same script with the same interpreter spawned by this
process (subprocess.Popen, clock started just before it), interleaved with the
hub's events so that both see the same load.

    .venv/bin/python bench/dispatch_latency.py
    .venv/bin/python bench/dispatch_latency.py --kinds pyt --events 100
    .venv/bin/python bench/dispatch_latency.py --history 20000
    .venv/bin/python bench/dispatch_latency.py --compare-history 20000
"""

import argparse
import base64
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import trivialci  # noqa: E402
from trivialci.spool import event  # noqa: E402
from _util import (PYTHON, Hub, Scratch, block_medians, iqr, median, ms, percentile, print_table,  # noqa: E402
                   ratio, spread, verdict, wait_for, write_script)

PY_TYPE, SH_TYPE = "probe_py", "probe_sh"
PY_SCRIPT = """import time; FIRST_LINE = time.time()
import os
with open(os.environ["BENCH_MARKS"], "a") as marks:
    marks.write(f"{FIRST_LINE!r} {os.environ.get('TRIVIALCI_EVENT_ID', 'bare')}\\n")
"""
PYT_SCRIPT = """import os, time
import trivialci  # as a pipeline script starts
FIRST_LINE = time.time()
with open(os.environ["BENCH_MARKS"], "a") as marks:
    marks.write(f"{FIRST_LINE!r} {os.environ.get('TRIVIALCI_EVENT_ID', 'bare')}\\n")
"""
SH_SCRIPT = """#!/bin/sh
first_line=$(date +%s.%N)
echo "$first_line ${TRIVIALCI_EVENT_ID:-bare}" >> "$BENCH_MARKS"
"""
GOAL_PY_RATIO, GOAL_PYT_RATIO, GOAL_SH_MS, GOAL_HISTORY_RATIO = 1.3, 0.8, 10.0, 1.10
SCRIPTS = {"py": (PY_TYPE, f"{PY_TYPE}.py", PY_SCRIPT), "pyt": (PY_TYPE, f"{PY_TYPE}.py", PYT_SCRIPT),
           "sh": (SH_TYPE, SH_TYPE, SH_SCRIPT)}
TITLES = {"py": "(a) drop -> first line of a TYPE.py script",
          "pyt": "(a') drop -> first line after `import trivialci` of a TYPE.py script",
          "sh": "(b) drop -> first line of an executable #!/bin/sh script"}


class Marks:
    """The lines probe scripts append: 'FIRST_LINE_TIME EVENT_ID'."""

    def __init__(self, path: Path):
        self.path = path
        path.touch()
        self._offset = 0
        self._pending = ""

    def next(self) -> tuple[float, str] | None:
        with open(self.path) as marks:
            marks.seek(self._offset)
            self._pending += marks.read()
            self._offset = marks.tell()
        if "\n" not in self._pending:
            return None
        line, self._pending = self._pending.split("\n", 1)
        first_line, event_id = line.split(" ", 1)
        return float(first_line), event_id


class HubTarget:
    """A serving hub on its own spool; one sample = one emitted event."""

    def __init__(self, label: str, root: Path, pipeline: Path, event_type: str, history: int, options=()):
        self.label, self.event_type = label, event_type
        self.spool = root / "spool"
        self.marks = Marks(root / "marks")
        if history:
            prefill_history(self.spool, history)
        self.hub = Hub(self.spool, pipeline, *options, env={"BENCH_MARKS": str(self.marks.path)})
        self.samples: list[float] = []
        self.emit_times: list[float] = []

    def sample(self, timeout: float) -> None:
        started = time.time()
        trivialci.emit(self.event_type, {"bench": "dispatch_latency"}, spool=self.spool)
        emitted = time.time()
        first_line, event_id = wait_for(self.marks.next, timeout, f"the first line of {self.label}'s script")
        wait_for(lambda: self._recorded(event_id), timeout, f"{self.label} to record {event_id}")
        self.samples.append(first_line - started)
        self.emit_times.append(emitted - started)

    def _recorded(self, event_id: str) -> bool:
        stamp, stem = event_id[:24], event_id[25:]
        day = self.spool / "done" / stamp[:10]
        if (day / f"{stamp[11:]}-{stem}.result.json").exists():
            return True
        if list(self.spool.glob(f"failed/*/*{stem}.result.json")):
            raise RuntimeError(f"{self.label}: the probe failed; see {self.spool}/failed/\n{self.hub.stderr_tail()}")
        return False

    def close(self) -> None:
        self.hub.stop()


class BareTarget:
    """The same script spawned directly by this process, with the same interpreter."""

    def __init__(self, root: Path, script: Path):
        self.label = "bare Popen (baseline)"
        self.marks = Marks(root / "bare.marks")
        self.argv = ([PYTHON] if script.suffix == ".py" else []) + [str(script), _argument()]
        self.env = {**os.environ, "BENCH_MARKS": str(self.marks.path)}
        self.log = root / "bare.log"
        self.samples: list[float] = []
        self.emit_times: list[float] = []

    def sample(self, timeout: float) -> None:
        with open(self.log, "ab") as log:
            started = time.time()
            process = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=self.env)
        process.wait(timeout)
        first_line, _ = wait_for(self.marks.next, timeout, "the first line of the bare script")
        self.samples.append(first_line - started)

    def close(self) -> None:
        pass


def _argument() -> str:
    """What a script gets as argv[1]: the event as base64 JSON (same size as the hub's)."""
    return base64.b64encode(event.encode({"bench": "dispatch_latency"})).decode()


def prefill_history(spool: Path, records: int) -> int:
    """`records` handled-looking events (.json, .log, .result.json) in today's done/DAY/, fast, no fsync."""
    day = spool / "done" / time.strftime("%Y-%m-%d", time.gmtime())
    day.mkdir(parents=True)
    midnight = time.time() // 86400 * 86400
    step = max(1e-6, (time.time() - midnight) / max(records, 1) * 0.9)
    body = b'{"branch": "main", "old": "0000000000000000000000000000000000000000", "new": "1111111111111111111111111111111111111111"}\n'
    for number in range(records):
        handled = midnight + number * step
        _write_record(day, handled, f"branch_update.{_stamp(handled)}.benchhost.4242.{number:06x}", body)
    os.sync()  # an old history is on disk already; its writeback must not land in the measurement
    return records * 3


def _stamp(seconds: float) -> str:
    return time.strftime("%Y%m%dT%H%M%S", time.gmtime(seconds)) + f".{int(seconds % 1 * 1e6):06d}Z"


def _write_record(day: Path, handled: float, stem: str, body: bytes) -> None:
    prefix = time.strftime("%H%M%S", time.gmtime(handled)) + f".{int(handled % 1 * 1e6):06d}-{stem}"
    result = {"event": f"{stem}.json", "type": "branch_update", "node": "hub", "attempt": 1, "status": "done",
              "reason": "exit status 0", "exit_code": 0, "signal": None, "script": "/pipeline/branch_update.py",
              "timeout": 3600.0, "duration": 0.05, "log": f"{prefix}.log"}
    (day / f"{prefix}.json").write_bytes(body)
    (day / f"{prefix}.log").write_bytes(b"queued build for main\n")
    (day / f"{prefix}.result.json").write_text(json.dumps(result, indent=2) + "\n")


def measure(kind: str, args, spools: list[tuple]) -> list:
    """Interleaved samples of a hub per (label, history size) and of the bare spawn; the targets, filled in."""
    with Scratch() as tmp:
        pipeline = tmp / "pipeline"
        event_type, name, text = SCRIPTS[kind]
        script = write_script(pipeline, name, text, executable=kind == "sh")
        targets = []
        try:
            for number, (label, size, *options) in enumerate(spools):
                (tmp / f"hub{number}").mkdir()
                targets.append(HubTarget(label, tmp / f"hub{number}", pipeline, event_type, size, options))
            targets.append(BareTarget(tmp, script))
            for target in targets:
                if isinstance(target, HubTarget):
                    target.hub.wait_ready()
            run_samples(targets, args)
        finally:
            for target in targets:
                target.close()
        return targets


def run_samples(targets: list, args) -> None:
    """One sample of each target per round, in a new random order each round (seeded).

    A fixed or rotating order keeps each target behind the same neighbour, and
    what a neighbour's fsyncs leave behind then shows up as a difference
    between targets that have nothing else different.
    """
    shuffler = random.Random(args.seed)
    for number in range(args.warmup + args.events):
        for target in shuffler.sample(targets, len(targets)):
            target.sample(args.timeout)
            time.sleep(args.gap)
        if number == args.warmup - 1:
            for target in targets:
                target.samples.clear()
                target.emit_times.clear()


def report(kind: str, targets: list, args) -> dict:
    baseline = median(targets[-1].samples)
    rows = []
    for target in targets:
        values = target.samples
        rows.append([target.label, ms(median(values)), ms(percentile(values, 90)), ms(min(values)), ms(max(values)),
                     ms(iqr(values)), spread(block_medians(values, args.blocks), 1e3),
                     ms(median(target.emit_times)) if target.emit_times else "-",
                     ms(median([a - b for a, b in zip(values, target.emit_times)])) if target.emit_times else "-",
                     f"{ratio(median(values), baseline):.2f}x"])
    title = f"{TITLES[kind]}, {len(targets[-1].samples)} events each, ms"
    print_table(title, ["target", "p50", "p90", "min", "max", "IQR", f"p50 of {args.blocks} blocks", "emit p50",
                        "after emit p50", "p50 vs bare"], rows)
    return {target.label: median(target.samples) for target in targets}


def print_goals(kind: str, targets: list) -> None:
    bare = median(targets[-1].samples)
    hubs = targets[:-1]
    first = median(hubs[0].samples)
    if kind in ("py", "pyt"):
        goal = GOAL_PY_RATIO if kind == "py" else GOAL_PYT_RATIO
        print(f"  goal: p50 <= {goal}x bare spawn: {ratio(first, bare):.2f}x -> {verdict(ratio(first, bare) <= goal)}")
    else:
        print(f"  goal: p50 <= {GOAL_SH_MS:g} ms: {first * 1e3:.2f} ms -> {verdict(first * 1e3 <= GOAL_SH_MS)}")
    if len(hubs) == 3:
        print_history_goal(*hubs)


def print_history_goal(empty, control, history) -> None:
    """History against both empty spools pooled; the two empty spools against each other show the noise floor."""
    def after_emit(target):
        return [a - b for a, b in zip(target.samples, target.emit_times)]
    change = ratio(median(history.samples), median(empty.samples + control.samples))
    floor = ratio(median(control.samples), median(empty.samples))
    change_after = ratio(median(after_emit(history)), median(after_emit(empty) + after_emit(control)))
    floor_after = ratio(median(after_emit(control)), median(after_emit(empty)))
    print(f"  goal: with history within {GOAL_HISTORY_RATIO - 1:.0%} of an empty spool: {change:.3f}x "
          f"-> {verdict(change <= GOAL_HISTORY_RATIO)}   (empty vs empty: {floor:.3f}x)")
    print(f"        the node's part alone (from emit's return): {change_after:.3f}x   (empty vs empty: {floor_after:.3f}x)")


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=200, help="measured events per target [200]")
    parser.add_argument("--warmup", type=int, default=5, help="events per target sent first, not counted [5]")
    parser.add_argument("--gap", type=float, default=0.02, help="seconds of idle between samples [0.02]")
    parser.add_argument("--timeout", type=float, default=20.0, help="deadline per event, seconds [20]")
    parser.add_argument("--blocks", type=int, default=4, help="consecutive blocks whose p50s show the spread [4]")
    parser.add_argument("--seed", type=int, default=1, help="seed of the random order of targets in a round [1]")
    parser.add_argument("--kinds", default="pyt,py,sh", help="some of pyt, py, sh [pyt,py,sh]")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--history", type=int, default=0, metavar="N",
                       help="measure a hub whose done/ holds N handled records (3N files) instead of an empty one")
    group.add_argument("--compare-history", type=int, default=0, metavar="N",
                       help="measure two empty hubs (one as a control) and one with N records in done/, "
                            "and their ratios")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    if args.compare_history:
        spools = [("hub, empty spool", 0), ("hub, empty spool #2 (control)", 0),
                  (f"hub, {args.compare_history} records in done/", args.compare_history)]
    else:
        label = f"hub, {args.history} records in done/" if args.history else "hub, empty spool"
        spools = [(label, args.history), (f"{label}, --no-fork-server", args.history, "--no-fork-server")]
    print(f"dispatch latency: {PYTHON}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}; "
          f"{args.events} events per target, {args.gap * 1e3:g} ms apart, after {args.warmup} warm-up events")
    for kind in args.kinds.split(","):
        targets = measure(kind, args, spools)
        report(kind, targets, args)
        print_goals(kind, targets)


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit(130)
