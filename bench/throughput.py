"""Throughput: events per second of a no-op script through a real hub.

The script is a `#!/bin/sh` one (--script sh) or a TYPE.py that imports
trivialci (--script py, as a pipeline script starts), which the hub forks from
its fork server; with --script py the same hub with --no-fork-server is
measured too, as today's reference.

Each run fills a fresh spool's inbox with N events (trivialci.emit, several
threads; not timed), then times `trivialci hub --drain --jobs J` from its
spawn until it exits, and checks that all N are recorded in done/. A hub
draining an empty inbox, timed the same way, gives the start-up cost that
"net" events/s leaves out. The baseline spawns the same script N times in a
row (subprocess.run) from this process. Runs of each configuration are
interleaved so that all see the same load. Every fsync of the hub stays on.

    .venv/bin/python bench/throughput.py
    .venv/bin/python bench/throughput.py --script py --events 300 --jobs 2
    .venv/bin/python bench/throughput.py --events 500 --repeats 5 --jobs 1,2,4
"""

import argparse
import base64
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import trivialci  # noqa: E402
from trivialci.spool import event  # noqa: E402
from _util import Hub, Scratch, median, print_table, ratio, remove_dir, spread, verdict, write_script  # noqa: E402

EVENT_TYPE = "noop"
NOOP_SCRIPT = "#!/bin/sh\nexit 0\n"
NOOP_PY_SCRIPT = "import trivialci\n"
GOAL_JOBS, GOAL_RATE = 2, 190.0
GOAL_PY_RATIO = 5.0  # --script py: a hub with its fork server, against bare spawns in a row


def fill_inbox(spool: Path, events: int, threads: int) -> None:
    payload = {"bench": "throughput"}
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(lambda number: trivialci.emit(EVENT_TYPE, {**payload, "n": number}, spool=spool), range(events)))


def drain_once(tmp: Path, pipeline: Path, events: int, jobs: int, args, *options) -> float:
    """Seconds a `--drain` hub takes, from spawn to exit, for `events` events in its inbox."""
    run_dir = tmp / f"run-{time.monotonic_ns()}"
    run_dir.mkdir()
    spool = run_dir / "spool"
    if events:
        fill_inbox(spool, events, args.fill_threads)
    started = time.perf_counter()
    hub = Hub(spool, pipeline, "--drain", "--jobs", jobs, *options)
    code = hub.wait_exit(args.timeout)
    elapsed = time.perf_counter() - started
    check_all_done(spool, events, code, hub)
    remove_dir(run_dir)
    return elapsed


def check_all_done(spool: Path, events: int, code: int, hub: Hub) -> None:
    done = sum(1 for day in (spool / "done").glob("*") for name in os.listdir(day) if name.endswith(".result.json"))
    failed = list((spool / "failed").glob("*/*.result.json"))
    if code != 0 or done != events or failed:
        raise RuntimeError(f"hub exit {code}, {done}/{events} in done/, {len(failed)} failed:\n{hub.stderr_tail()}")


def bare_loop(script: Path, events: int) -> float:
    """Seconds to run the script `events` times in a row, as the hub would (argv[1] = base64 event)."""
    argument = base64.b64encode(event.encode({"bench": "throughput", "n": 0})).decode()
    started = time.perf_counter()
    command = ([sys.executable] if script.suffix == ".py" else []) + [str(script), argument]
    for _ in range(events):
        subprocess.run(command, stdin=subprocess.DEVNULL, check=True)
    return time.perf_counter() - started


def measure(args) -> dict:
    """{configuration: [seconds per run]}, runs of all configurations interleaved."""
    jobs_list = [int(j) for j in args.jobs.split(",")]
    spawning = [f"{jobs} spawn" for jobs in jobs_list] if args.script == "py" else []
    times: dict = {"startup": [], **{jobs: [] for jobs in jobs_list + spawning}, "bare": []}
    with Scratch() as tmp:
        script = write_script(tmp / "pipeline", EVENT_TYPE + (".py" if args.script == "py" else ""),
                              NOOP_PY_SCRIPT if args.script == "py" else NOOP_SCRIPT, executable=args.script == "sh")
        for repeat in range(args.repeats):
            times["startup"].append(drain_once(tmp, tmp / "pipeline", 0, 1, args))
            for jobs in jobs_list:
                times[jobs].append(drain_once(tmp, tmp / "pipeline", args.events, jobs, args))
            for key in spawning:
                times[key].append(drain_once(tmp, tmp / "pipeline", args.events, int(key.split()[0]), args,
                                             "--no-fork-server"))
            times["bare"].append(bare_loop(script, args.events))
            print(f"  run {repeat + 1}/{args.repeats}: " + ", ".join(
                f"{key if isinstance(key, str) else f'jobs {key}'}: {values[-1]:.2f} s" for key, values in times.items()), flush=True)
    return times


def report(times: dict, args) -> None:
    events, startup = args.events, median(times["startup"])
    bare_rates = [events / seconds for seconds in times["bare"]]
    rows = [["bare subprocess.run loop (baseline)", f"{median(bare_rates):.0f}", spread(bare_rates, digits=0), "-",
             f"{median([s / events for s in times['bare']]) * 1e3:.2f}", "1.00x"]]
    for jobs in (key for key in times if key not in ("startup", "bare")):
        rates = [events / seconds for seconds in times[jobs]]
        net = [events / max(seconds - startup, 1e-9) for seconds in times[jobs]]
        label = f"hub --drain --jobs {jobs}" if isinstance(jobs, int) else f"hub --drain --jobs {jobs.split()[0]} --no-fork-server"
        rows.append([label, f"{median(rates):.0f}", spread(rates, digits=0), f"{median(net):.0f}",
                     f"{median([s / events for s in times[jobs]]) * 1e3:.2f}",
                     f"{ratio(median(rates), median(bare_rates)):.2f}x"])
    what = "a TYPE.py that imports trivialci" if args.script == "py" else "no-op #!/bin/sh script"
    print_table(f"{what}, {events} events per run, {args.repeats} runs, events/s",
                ["configuration", "median", "min-max", "net of start-up", "ms/event", "vs bare"], rows)
    print(f"  hub start-up + exit on an empty inbox: median {startup * 1e3:.0f} ms "
          f"({spread(times['startup'], 1e3, 0)} ms)")
    if GOAL_JOBS in times and args.script == "sh":
        rate = median([events / seconds for seconds in times[GOAL_JOBS]])
        print(f"  goal: >= {GOAL_RATE:g} events/s with --jobs {GOAL_JOBS}: {rate:.0f} -> {verdict(rate >= GOAL_RATE)}")
    if GOAL_JOBS in times and args.script == "py":
        speedup = ratio(median(times["bare"]), median(times[GOAL_JOBS]))
        print(f"  goal: {events} events with --jobs {GOAL_JOBS} >= {GOAL_PY_RATIO:g}x faster than {events} bare spawns "
              f"in a row: {speedup:.2f}x -> {verdict(speedup >= GOAL_PY_RATIO)}")


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=2000, help="events per run [2000]")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each configuration [3]")
    parser.add_argument("--jobs", default="1,2", help="comma-separated --jobs values to measure [1,2]")
    parser.add_argument("--script", choices=["sh", "py"], default="sh",
                        help="a no-op #!/bin/sh script, or a TYPE.py that imports trivialci [sh]")
    parser.add_argument("--fill-threads", type=int, default=8, help="threads that emit the events (untimed) [8]")
    parser.add_argument("--timeout", type=float, default=120.0, help="deadline for one drain, seconds [120]")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    print(f"throughput: {sys.executable}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}")
    report(measure(args), args)


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit(130)
