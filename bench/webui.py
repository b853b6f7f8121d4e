"""The web UI's time to first byte with 10,000 jobs in state/ against 10.

Two real hubs (`trivialci hub --ui 127.0.0.1:0`, no --tick, so nothing else
runs) on spools whose state/jobs/ is written directly, in the format HubState
writes: 10 jobs and 10,000 jobs. Each round asks both UIs, in a seeded random
order, for `/` (the newest 50 jobs) and for the page of the oldest job, over a
fresh connection each time, and times from the request until the first byte of
the answer (the status line). The jobs page lists state/jobs/ and reads only
the 50 records it shows, so its time should grow with the listing only.

    .venv/bin/python bench/webui.py
    .venv/bin/python bench/webui.py --rounds 200 --jobs 10000 --small 10
"""

import argparse
import http.client
import json
import random
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

from _util import PYTHON, Scratch, median, ms, print_table, ratio, spawn, spread, stop, wait_for


def write_jobs(spool: Path, count: int) -> list[str]:
    """`count` finished jobs in state/jobs/, one second apart; their ids, oldest first."""
    jobs = spool / "state" / "jobs"
    jobs.mkdir(parents=True)
    start, ids = time.time() - count - 60, []
    for n in range(count):
        when = start + n
        job_id = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(when)) + f"-{n % 0xffffff:06x}"
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(when))
        record = {"job": job_id, "repo": "/srv/repo.git", "branch": f"feature/{n % 97}", "sha": f"{n:040x}",
                  "kind": "build", "attempt": 1, "status": "PASSED", "worker": "build-1", "queued": stamp,
                  "started": stamp, "ended": stamp, "run_time": 1.0, "queue_wait": 0.0, "params": {},
                  "request": None, "exit_code": 0, "reason": "exit status 0"}
        (jobs / f"{job_id}.json").write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
        ids.append(job_id)
    (spool / "state" / ".built").write_text('{"events": 0}\n')
    return ids


def start_hub(root: Path, jobs: int):
    spool = root / f"spool-{jobs}"
    ids = write_jobs(spool, jobs)
    hub = spawn([PYTHON, "-m", "trivialci", "hub", "--spool", str(spool), "--workdir", str(root / f"wd-{jobs}"),
                 "--ui", "127.0.0.1:0"], stderr=(root / f"hub-{jobs}.log").open("w"))
    url = wait_for(lambda: _ui_url(spool), 30, f"the hub with {jobs} jobs to serve its UI")
    return hub, url, ids


def _ui_url(spool: Path):
    try:
        return json.loads((spool / "hub.json").read_text()).get("ui_url")
    except (OSError, ValueError):
        return None


def first_byte(url: str, path: str) -> float:
    """Seconds from sending GET `path` until the status line arrived (the body is then read and dropped)."""
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    try:
        started = time.perf_counter()
        connection.request("GET", path)
        response = connection.getresponse()
        elapsed = time.perf_counter() - started
        if response.status != 200:
            raise RuntimeError(f"GET {path} answered {response.status}")
        response.read()
        return elapsed
    finally:
        connection.close()


def measure(hubs: dict, rounds: int, seed: int) -> dict:
    """{(size, page): [seconds]} over `rounds` rounds in a seeded random order."""
    order, times = random.Random(seed), {}
    for _ in range(rounds):
        asks = [(size, page) for size in hubs for page in ("/", "job")]
        order.shuffle(asks)
        for size, page in asks:
            url, ids = hubs[size]
            path = "/" if page == "/" else f"/jobs/{ids[0]}"
            times.setdefault((size, page), []).append(first_byte(url, path))
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--jobs", type=int, default=10000, help="jobs in the large state/")
    parser.add_argument("--small", type=int, default=10, help="jobs in the small state/")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    with Scratch() as root:
        started = {size: start_hub(root, size) for size in (args.small, args.jobs)}
        hubs = {size: (url, ids) for size, (_, url, ids) in started.items()}
        for url, ids in hubs.values():  # warm up: imports, page cache
            first_byte(url, "/"), first_byte(url, f"/jobs/{ids[0]}")
        times = measure(hubs, args.rounds, args.seed)
        for hub, _, _ in started.values():
            stop(hub)
    rows = []
    for page in ("/", "job"):
        small, large = median(times[(args.small, page)]), median(times[(args.jobs, page)])
        rows.append([page if page == "/" else "/jobs/JOB", ms(small), ms(large), f"{ratio(large, small):.2f}",
                     spread(times[(args.jobs, page)], 1e3)])
    print_table(f"time to first byte, median of {args.rounds} (ms)",
                ["page", f"{args.small} jobs", f"{args.jobs} jobs", "ratio", f"range, {args.jobs} jobs"], rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
