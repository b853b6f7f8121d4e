"""Idle cost: CPU and memory of a hub that waits on an empty inbox.

Hubs in inotify mode, with --poll 1 and with --poll 0.1 run side by side on
their own empty spools, with one more whose spool went away after it started
(renamed: as a mount that is gone, every path under it fails), next to a bare `python -c 'import time;
time.sleep(...)'` as the baseline. After a warm-up, their CPU time (user+sys
of all threads, /proc/PID/stat) is read at the edges of `--windows` equal
windows spanning `--seconds`: the median over the windows and their spread are
shown as % of one core. RSS is VmRSS from /proc/PID/status at the end.

    .venv/bin/python bench/idle.py
    .venv/bin/python bench/idle.py --seconds 60 --windows 6
"""

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _util import PYTHON, Hub, Scratch, cpu_seconds, median, print_table, ratio, rss_kib, spawn, spread, stop, \
    write_script  # noqa: E402

MODES = {"inotify": [], "poll 1": ["--poll", "1"], "poll 0.1": ["--poll", "0.1"], "inotify, spool gone": []}


def start_all(tmp: Path, warmup: float, seconds: float) -> dict:
    """{label: process}: the bare sleeper first, then one hub per mode."""
    pipeline = tmp / "pipeline"
    write_script(pipeline, "noop", "#!/bin/sh\nexit 0\n", executable=True)
    sleep_for = warmup + seconds + 30
    processes = {"bare python sleep (baseline)": spawn([PYTHON, "-c", f"import time; time.sleep({sleep_for})"],
                                                       stdin=subprocess.DEVNULL)}
    hubs = {}
    for number, (mode, options) in enumerate(MODES.items()):
        (tmp / f"m{number}").mkdir()
        hubs[f"hub, {mode}"] = Hub(tmp / f"m{number}" / "spool", pipeline, *options)
    for label, hub in hubs.items():
        processes[label] = hub.wait_ready().process
    gone = tmp / f"m{len(MODES) - 1}"
    (gone / "spool").rename(gone / "spool-away")
    return processes


def sample_windows(processes: dict, seconds: float, windows: int) -> dict:
    """{label: [CPU % of one core per window]}."""
    edges = [(time.monotonic(), {label: cpu_seconds(p.pid) for label, p in processes.items()})]
    for _ in range(windows):
        time.sleep(seconds / windows)
        edges.append((time.monotonic(), {label: cpu_seconds(p.pid) for label, p in processes.items()}))
    shares = {label: [] for label in processes}
    for (start, before), (end, after) in zip(edges, edges[1:]):
        for label in processes:
            shares[label].append(100 * (after[label] - before[label]) / (end - start))
    return shares


def report(processes: dict, shares: dict, args) -> None:
    rss = {label: rss_kib(process.pid) for label, process in processes.items()}
    baseline = "bare python sleep (baseline)"
    rows = []
    for label in processes:
        total = sum(shares[label]) / len(shares[label])
        rows.append([label, f"{median(shares[label]):.2f}", spread(shares[label]), f"{total:.2f}",
                     f"{rss[label] / 1024:.1f}", f"{ratio(rss[label], rss[baseline]):.2f}x"])
    print_table(f"idle on an empty inbox, {args.seconds:g} s in {args.windows} windows "
                f"(tick = {100 / os.sysconf('SC_CLK_TCK') / (args.seconds / args.windows):.2f}% per window)",
                ["process", "CPU % median", "min-max", "CPU % overall", "RSS MiB", "RSS vs bare"], rows)


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="measured idle time [20]")
    parser.add_argument("--windows", type=int, default=4, help="windows the idle time is cut into [4]")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds after start-up not measured [3]")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    print(f"idle: {PYTHON}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}")
    with Scratch() as tmp:
        processes = start_all(tmp, args.warmup, args.seconds)
        try:
            time.sleep(args.warmup)
            shares = sample_windows(processes, args.seconds, args.windows)
            report(processes, shares, args)
        finally:
            for process in processes.values():
                stop(process)


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit(130)
