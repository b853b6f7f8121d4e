"""Idle memory of a node and its fork server: the hub and a worker on the shipped pipeline.

Each node starts on its own empty spool, handles one event (so that the fork
server has served once and anything loaded lazily is loaded), then idles.
After `--settle` seconds, VmRSS (and PSS, which splits the pages the two
share) is read from /proc for the node and for its fork server, and both are
counted. The same node with --no-fork-server is today's reference.

    .venv/bin/python bench/idle_rss.py
"""

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import trivialci  # noqa: E402
from _util import PYTHON, ROOT, Scratch, print_table, rss_kib, spawn, stop, verdict, wait_for  # noqa: E402

GOAL_MIB = 60.0
NODES = {"hub": ["hub"], "worker": ["worker", "--name", "w1", "--kind", "build"]}


def pss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1])
    return 0


def fork_server_of(pid: int) -> int | None:
    """The node's child that runs the fork server (its command line names zygote)."""
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                if int(stat[1]) == pid and b"zygote" in (entry / "cmdline").read_bytes():
                    return int(entry.name)
            except OSError:
                continue
    return None


def start(tmp: Path, kind: str, options: list[str]) -> tuple[subprocess.Popen, Path]:
    spool = tmp / f"{kind}{'-'.join(options)}" / "spool"
    spool.mkdir(parents=True)
    argv = [PYTHON, "-m", "trivialci", *NODES[kind], "--spool", str(spool), "--pipeline", str(ROOT / "pipeline"),
            "--workdir", str(spool.parent / "work"), *options]
    stderr = open(spool.parent / "stderr", "wb")
    process = spawn(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr)
    node_root = spool if kind == "hub" else spool / "workers" / "w1"
    wait_for(lambda: (node_root / f"{kind}.json").exists(), 30, f"the {kind} to start")
    if kind == "hub":  # one event, so that the fork server has served
        trivialci.emit("work_done", {"job": "x", "worker": "w1", "status": "PASSED"}, spool=spool)
        wait_for(lambda: list(spool.glob("*/*/*.result.json")), 30, "the hub's first event")  # done/ or failed/
    else:
        wait_for(lambda: list((node_root / "done").glob("*/*.result.json")), 30, "worker_started")
    return process, spool


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--settle", type=float, default=3.0, help="seconds of idle before reading [3]")
    args = parser.parse_args()
    print(f"idle memory: {PYTHON}, load {os.getloadavg()[0]:.2f}")
    rows, worst = [], 0.0
    with Scratch() as tmp:
        for kind in NODES:
            for options in ([], ["--no-fork-server"]):
                process, _ = start(tmp, kind, options)
                time.sleep(args.settle)  # idling is what is measured
                server = fork_server_of(process.pid)
                node_rss, node_pss = rss_kib(process.pid), pss_kib(process.pid)
                server_rss, server_pss = (rss_kib(server), pss_kib(server)) if server else (0, 0)
                total = (node_rss + server_rss) / 1024
                worst = max(worst, total) if server else worst
                rows.append([f"{kind}{' --no-fork-server' if options else ', with fork server'}",
                             f"{node_rss / 1024:.1f}", f"{server_rss / 1024:.1f}" if server else "-", f"{total:.1f}",
                             f"{(node_pss + server_pss) / 1024:.1f}"])
                stop(process)
    print_table("idle node and fork server, MiB", ["node", "node RSS", "fork server RSS", "RSS, both",
                                                   "PSS, both"], rows)
    print(f"  goal: a node and its fork server under {GOAL_MIB:g} MiB of RSS together: "
          f"{worst:.1f} MiB at most -> {verdict(worst < GOAL_MIB)}")


if __name__ == "__main__":
    main()
