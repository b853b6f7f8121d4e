"""Where a draining node spends its time: an in-process Node drains N no-op events.

Without --cprofile, the syscalls that matter are timed by wrapping them (wall
time, cheap), and the rest of the loop is what remains: the breakdown per
event is printed next to the drain's events/s. With --cprofile, the drain runs
under cProfile and the top functions are printed instead.

    .venv/bin/python bench/profile_drain.py --events 1000 --jobs 2
    .venv/bin/python bench/profile_drain.py --events 1000 --jobs 2 --cprofile
"""

import argparse
import cProfile
import os
import pstats
import selectors
import subprocess
import sys
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import trivialci  # noqa: E402
from trivialci.spool.layout import hub_dir  # noqa: E402
from trivialci.spool.node import Node, NodeConfig  # noqa: E402
from _util import Scratch, print_table, write_script  # noqa: E402

spent: dict[str, list[float]] = defaultdict(lambda: [0.0, 0])  # name: [seconds, calls]


def timed(name: str, function):
    def wrapper(*args, **kwargs):
        started = time.perf_counter()
        try:
            return function(*args, **kwargs)
        finally:
            entry = spent[name]
            entry[0] += time.perf_counter() - started
            entry[1] += 1
    return wrapper


def _timed_open(real_open):
    """os.open, timed apart by what it opens: a new file, a directory (to fsync it), or to read."""
    kinds = {name: timed(name, real_open) for name in ("os.open O_CREAT", "os.open O_DIRECTORY", "os.open to read")}

    def wrapper(path, flags, *args, **kwargs):
        kind = "os.open O_CREAT" if flags & os.O_CREAT else \
            "os.open O_DIRECTORY" if flags & os.O_DIRECTORY else "os.open to read"
        return kinds[kind](path, flags, *args, **kwargs)
    return wrapper


def instrument() -> None:
    """Time the calls that can block or cost much; the node looks them up at call time."""
    os.fsync = timed("os.fsync (file and directory)", os.fsync)
    os.open = _timed_open(os.open)
    os.rename = timed("os.rename", os.rename)
    os.listdir = timed("os.listdir", os.listdir)
    os.scandir = timed("os.scandir", os.scandir)
    subprocess.Popen.__init__ = timed("subprocess.Popen (fork/exec)", subprocess.Popen.__init__)
    selector = selectors.DefaultSelector
    selector.select = timed("selector.select (waiting)", selector.select)


def fill(spool: Path, events: int) -> None:
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda n: trivialci.emit("noop", {"n": n}, spool=spool), range(events)))


def drain(spool: Path, pipeline: Path, jobs: int, profiler) -> float:
    node = Node(hub_dir(spool), NodeConfig(pipeline=pipeline, jobs=jobs))
    with node:
        started = time.perf_counter()
        if profiler:
            profiler.enable()
        node.drain()
        if profiler:
            profiler.disable()
        return time.perf_counter() - started


def report_breakdown(events: int, elapsed: float) -> None:
    rows = [[name, f"{seconds:.3f}", calls, f"{seconds / events * 1e3:.3f}", f"{seconds / elapsed:.0%}"]
            for name, (seconds, calls) in sorted(spent.items(), key=lambda item: -item[1][0])]
    rest = elapsed - sum(seconds for seconds, _ in spent.values())
    rows.append(["everything else (Python in the loop)", f"{rest:.3f}", "-", f"{rest / events * 1e3:.3f}",
                 f"{rest / elapsed:.0%}"])
    print_table("wall time inside the node's drain", ["call", "seconds", "calls", "ms/event", "share"], rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=1000)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--cprofile", action="store_true", help="profile with cProfile instead of timing syscalls")
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    profiler = cProfile.Profile() if args.cprofile else None
    with Scratch() as tmp:
        pipeline = tmp / "pipeline"
        write_script(pipeline, "noop", "#!/bin/sh\nexit 0\n", executable=True)
        fill(tmp / "spool", args.events)
        if not profiler:
            instrument()
        elapsed = drain(tmp / "spool", pipeline, args.jobs, profiler)
    print(f"in-process drain of {args.events} no-op events, --jobs {args.jobs}: {elapsed:.2f} s, "
          f"{args.events / elapsed:.0f} events/s, {elapsed / args.events * 1e3:.2f} ms/event")
    if profiler:
        pstats.Stats(profiler).sort_stats("tottime").print_stats(args.top)
    else:
        report_breakdown(args.events, elapsed)


if __name__ == "__main__":
    main()
