"""The web UI's time to first byte with 10,000 jobs in state/ against 10, and a job page with a 50 MiB log.

Two real hubs (`trivialci hub --ui 127.0.0.1:0 --store file://...`, no
--tick, so nothing else runs) on spools whose state/jobs/ and state/branches/
are written directly, in the format HubState writes: 10 jobs and 10,000 jobs
(97 branches, round robin). Each round asks both UIs, in a seeded random
order, for `/` (the newest 50 jobs, as pushes), `/branches` (each branch's
newest push), `/branch?name=feature/3` (its pushes and the chart of its last
30 run times) and the page of the newest job, over a fresh connection each
time, and times from the request until the first byte of the answer (the
status line). Pages list state/jobs/ and read the records they show; what
needs a branch's jobs walks the names newest first and keeps the summaries of
final jobs, so the first ask of a page (shown apart: "cold") reads more than
the next ones.

The newest job of the large hub has a 50 MiB stored log (coloured lines): its
page shows the first 256 KiB page; `?from=last` counts the newlines before
the last page, a chunk at a time. Both are timed, with the bytes sent.

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
                  "started": stamp, "ended": stamp, "run_time": 1.0 + n % 7, "queue_wait": 0.0, "params": {},
                  "request": None, "exit_code": 0, "reason": "exit status 0", "subject": f"change number {n}",
                  "author": "A. Person"}
        (jobs / f"{job_id}.json").write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
        ids.append(job_id)
    branches = spool / "state" / "branches"
    branches.mkdir()
    for n in range(min(count, 97)):
        record = {"repo": "/srv/repo.git", "branch": f"feature/{n}", "jobs": [], "sha": f"{n:040x}"}
        (branches / f"b{n}.json").write_text(json.dumps(record) + "\n")
    (spool / "state" / ".built").write_text('{"events": 0}\n')
    return ids


def write_log(store: Path, job_id: str, size: int) -> None:
    """A stored log of `size` bytes of coloured lines, as a test runner prints them."""
    line = b"2026-12-02T07:52:08.916Z tests/test_x.py::test_case \x1b[32mPASSED\x1b[0m [ 42%]\n"
    directory = store / "jobs" / job_id
    directory.mkdir(parents=True)
    with open(directory / "log.txt", "wb") as log:
        block = line * (1 << 20 // len(line) + 1)
        while log.tell() < size:
            log.write(block[:size - log.tell()])


def start_hub(root: Path, jobs: int, log_bytes: int = 0):
    spool, store = root / f"spool-{jobs}", root / f"store-{jobs}"
    ids = write_jobs(spool, jobs)
    if log_bytes:
        write_log(store, ids[-1], log_bytes)
    hub = spawn([PYTHON, "-m", "trivialci", "hub", "--spool", str(spool), "--workdir", str(root / f"wd-{jobs}"),
                 "--store", f"file://{store}", "--ui", "127.0.0.1:0"], stderr=(root / f"hub-{jobs}.log").open("w"))
    url = wait_for(lambda: _ui_url(spool), 30, f"the hub with {jobs} jobs to serve its UI")
    return hub, url, ids


def _ui_url(spool: Path):
    try:
        return json.loads((spool / "hub.json").read_text()).get("ui_url")
    except (OSError, ValueError):
        return None


def first_byte(url: str, path: str) -> float:
    """Seconds from sending GET `path` until the status line arrived (the body is then read and dropped)."""
    return fetch(url, path)[0]


def fetch(url: str, path: str) -> tuple[float, int]:
    """(seconds to the status line, bytes of the body) of GET `path`."""
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    try:
        started = time.perf_counter()
        connection.request("GET", path)
        response = connection.getresponse()
        elapsed = time.perf_counter() - started
        if response.status != 200:
            raise RuntimeError(f"GET {path} answered {response.status}")
        return elapsed, len(response.read())
    finally:
        connection.close()


PAGES = {"/": "/", "/branches": "/branches", "/branch": "/branch?name=feature%2F3", "/jobs/JOB": None}


def page_path(page: str, ids: list[str]) -> str:
    return PAGES[page] or f"/jobs/{ids[-1]}"


def measure(hubs: dict, rounds: int, seed: int) -> dict:
    """{(size, page): [seconds]} over `rounds` rounds in a seeded random order."""
    order, times = random.Random(seed), {}
    for _ in range(rounds):
        asks = [(size, page) for size in hubs for page in PAGES]
        order.shuffle(asks)
        for size, page in asks:
            url, ids = hubs[size]
            times.setdefault((size, page), []).append(first_byte(url, page_path(page, ids)))
    return times


def measure_log(url: str, job_id: str, rounds: int) -> list[list]:
    """Rows for the job page of the 50 MiB log: its first page and its last page."""
    rows = []
    for name, path in (("first page", f"/jobs/{job_id}"), ("?from=last", f"/jobs/{job_id}?from=last")):
        found = [fetch(url, path) for _ in range(rounds)]
        seconds = [f[0] for f in found]
        rows.append([name, ms(median(seconds)), spread(seconds, 1e3), f"{found[0][1] / 1024:.0f} KiB"])
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=100)
    parser.add_argument("--jobs", type=int, default=10000, help="jobs in the large state/")
    parser.add_argument("--small", type=int, default=10, help="jobs in the small state/")
    parser.add_argument("--log-mib", type=int, default=50, help="MiB of the large hub's newest job's stored log")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    with Scratch() as root:
        started = {size: start_hub(root, size, args.log_mib << 20 if size == args.jobs else 0)
                   for size in (args.small, args.jobs)}
        hubs = {size: (url, ids) for size, (_, url, ids) in started.items()}
        cold = {(size, page): first_byte(url, page_path(page, ids)) for size, (url, ids) in hubs.items()
                for page in PAGES}  # the first ask: imports, page cache, no summary kept yet
        times = measure(hubs, args.rounds, args.seed)
        log_rows = measure_log(*hubs[args.jobs][:1], hubs[args.jobs][1][-1], max(5, args.rounds // 10))
        for hub, _, _ in started.values():
            stop(hub)
    rows = []
    for page in PAGES:
        small, large = median(times[(args.small, page)]), median(times[(args.jobs, page)])
        rows.append([page, ms(small), ms(large), f"{ratio(large, small):.2f}", spread(times[(args.jobs, page)], 1e3),
                     ms(cold[(args.jobs, page)])])
    print_table(f"time to first byte, median of {args.rounds} (ms)",
                ["page", f"{args.small} jobs", f"{args.jobs} jobs", "ratio", f"range, {args.jobs} jobs",
                 f"cold, {args.jobs} jobs"], rows)
    print_table(f"job page with a {args.log_mib} MiB stored log, {args.jobs} jobs (ms)",
                ["page of the log", "median", "range", "bytes sent"], log_rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
