"""Webhooks: a signed POST to the event in the inbox and to the build started; the endpoint under load.

1. delivered   signed GitHub push -> 202 (answered once the event is in the hub's inbox, fsynced),
               against the same event written by trivialci.emit in this process (the baseline); the
               pushes go to four branches in turn, as pushes do;
2. started     signed push -> the first line of the repository's build script, through the real flow
               (shipped pipeline, a worker the hub booted and kept), against the same push sent as a
               branch_update by trivialci.emit (what the gitwatcher does), interleaved;
3. load        CLIENTS processes POST signed deliveries (a 7 KB push body of an event that builds
               nothing: verified, parsed, answered 200) for LOAD_SECONDS (<= 10 s); the endpoint's
               requests/s and the hub process's CPU per request, and the hub's dispatch latency
               (emit -> a probe script's first line) with and without that load, as a ratio. The
               clients run on the same cores as the hub: on a 2-core host they take much of the CPU.

    .venv/bin/python bench/webhook.py [--samples 40] [--builds 12] [--load-seconds 8] [--clients 4]
"""

import argparse
import hashlib
import hmac
import json
import multiprocessing
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

import trivialci  # noqa: E402
from _util import (ROOT, Hub, Scratch, cpu_seconds, median, ms, percentile, print_table, ratio, spread,  # noqa: E402
                   wait_for, write_script)
from forges import post, push  # noqa: E402

from trivialci.up import local_worker_pids  # noqa: E402

SECRET = "bench-secret"
PROBE = "import time, os; t = time.time()\nopen(os.environ['BENCH_MARKS'], 'a').write(f'{t!r}\\n')\n"
BUILD = "#!/bin/sh\ndate +%s.%N >> \"$BENCH_MARKS\"\n"
NOTHING = "import sys; sys.stdin.read()\n"
BRANCHES = ["main", "feature/login", "fix/crash", "release/1.2"]


def signed(event: str, body: bytes) -> dict:
    digest = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    return {"Content-Type": "application/json", "X-GitHub-Event": event, "X-GitHub-Delivery": str(uuid.uuid4()),
            "X-Hub-Signature-256": f"sha256={digest}"}


def git(*args, cwd):
    return subprocess.run(["git", *map(str, args)], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


class Marks:
    def __init__(self, path: Path):
        self.path, self.seen = path, 0
        path.touch()

    def next(self):
        lines = self.path.read_text().splitlines()
        if len(lines) > self.seen:
            self.seen += 1
            return float(lines[self.seen - 1])
        return None


def hub_with_webhook(spool: Path, pipeline: Path, repo: Path, *options, env=None) -> tuple[Hub, str]:
    hub = Hub(spool, pipeline, "--webhook", "127.0.0.1:0", "--repo", repo, *options,
              env={"TRIVIALCI_WEBHOOK_SECRET": SECRET, **(env or {})}).wait_ready()
    url = wait_for(lambda: json.loads((spool / "hub.json").read_text()).get("webhook_url"), 20, "the endpoint")
    return hub, url


# --- 1. POST -> event in the inbox ------------------------------------------------------------

def delivered(tmp: Path, samples: int) -> tuple[list[float], list[float]]:
    pipeline = tmp / "p1"
    write_script(pipeline, "branch_update.py", NOTHING)
    spool = tmp / "s1"
    hub, url = hub_with_webhook(spool, pipeline, tmp / "octo" / "app.git")
    posted, emitted = [], []
    try:
        for number in range(samples):
            branch = BRANCHES[number % len(BRANCHES)]  # pushes come again and again to a few branches
            body = json.dumps(push("github", "octo/app", branch, f"{number:040x}")).encode()
            started = time.perf_counter()
            status, text = post(url + "github", body, signed("push", body))
            posted.append(time.perf_counter() - started)
            assert status == 202, text
            started = time.perf_counter()
            trivialci.emit("branch_update", {"repo": str(tmp / "octo" / "app.git"), "branch": f"e{number}",
                                             "old": None, "new": f"{number:040x}"}, spool=spool)
            emitted.append(time.perf_counter() - started)
            time.sleep(0.02)
    finally:
        hub.stop()
    return posted, emitted


# --- 2. POST -> build started ------------------------------------------------------------------

class Flow:
    """A repository, a hub on the shipped pipeline taking its webhooks, the worker it boots."""

    def __init__(self, tmp: Path):
        self.bare, self.work = tmp / "git" / "octo" / "app.git", tmp / "work"
        git("init", "-q", "--bare", "-b", "main", self.bare, cwd=tmp)
        git("init", "-q", "-b", "main", self.work, cwd=tmp)
        git("remote", "add", "origin", self.bare, cwd=self.work)
        self.marks = Marks(tmp / "build.marks")
        self.spool, self.store = tmp / "s2", tmp / "store"
        self.hub, self.url = hub_with_webhook(self.spool, ROOT / "pipeline", self.bare, "--store",
                                              f"file://{self.store}", "--workdir", tmp / "wd" / "hub", "--tick", "1",
                                              env={"BENCH_MARKS": str(self.marks.path)})
        self.number = 0

    def commit(self) -> str:
        self.number += 1
        build = self.work / ".trivialci" / "build"
        build.parent.mkdir(exist_ok=True)
        build.write_text(BUILD)
        build.chmod(0o755)
        (self.work / "n").write_text(str(self.number))
        git("add", "-A", cwd=self.work)
        git("-c", "user.name=b", "-c", "user.email=b@b", "commit", "-q", "-m", f"c{self.number}", cwd=self.work)
        git("push", "-q", "origin", "main", cwd=self.work)
        return git("rev-parse", "HEAD", cwd=self.work)

    def by_webhook(self, sha: str) -> float:
        body = json.dumps(push("github", "octo/app", "main", sha)).encode()
        started = time.time()
        status, text = post(self.url + "github", body, signed("push", body))
        assert status == 202, text
        return self._started(started)

    def by_emit(self, sha: str) -> float:
        started = time.time()
        trivialci.emit("branch_update", {"repo": str(self.bare), "branch": "main", "old": None, "new": sha},
                       spool=self.spool)
        return self._started(started)

    def _started(self, started: float) -> float:
        first_line = wait_for(self.marks.next, 60, "the build's first line")
        wait_for(lambda: not any(w.get("state") == "busy" for w in self._workers()), 60, "the worker to be idle")
        return first_line - started

    def _workers(self):
        return [json.loads(p.read_text()) for p in (self.spool / "state" / "workers").glob("*.json")]

    def close(self):
        self.hub.stop()
        for pid in local_worker_pids(self.spool):
            os.kill(pid, signal.SIGTERM)


def started(tmp: Path, builds: int) -> tuple[list[float], list[float]]:
    flow = Flow(tmp)
    hooked, emitted = [], []
    try:
        flow.by_webhook(flow.commit())  # boots the worker, warms both mirrors
        for _ in range(builds):
            hooked.append(flow.by_webhook(flow.commit()))
            emitted.append(flow.by_emit(flow.commit()))
    finally:
        flow.close()
    return hooked, emitted


# --- 3. under load -----------------------------------------------------------------------------

def _client(url: str, until: float, counts) -> None:
    payload = push("github", "octo/app", "main", "f" * 40)
    payload["commits"] = [{"id": f"{n:040x}", "message": "m" * 100, "author": {"name": "a"}} for n in range(25)]
    body = json.dumps(payload).encode()
    done = 0
    while time.time() < until:
        status, _ = post(url + "github", body, signed("issues", body))  # verified, parsed, nothing to build
        done += status == 200
    counts.put(done)


def load(tmp: Path, seconds: float, clients: int, probes: int) -> tuple[float, float, list[float], list[float]]:
    pipeline = tmp / "p3"
    write_script(pipeline, "probe.py", PROBE)
    spool, marks = tmp / "s3", Marks(tmp / "probe.marks")
    hub, url = hub_with_webhook(spool, pipeline, tmp / "octo" / "app.git", env={"BENCH_MARKS": str(marks.path)})
    try:
        quiet = dispatch_latencies(spool, marks, probes, time.time() + 60)
        counts = multiprocessing.Queue()
        cpu_before = cpu_seconds(hub.pid)
        until = time.time() + seconds
        workers = [multiprocessing.Process(target=_client, args=(url, until, counts)) for _ in range(clients)]
        for worker in workers:
            worker.start()
        loaded = dispatch_latencies(spool, marks, probes, until - 0.5)
        for worker in workers:
            worker.join()
        total = sum(counts.get() for _ in workers)
        cpu = cpu_seconds(hub.pid) - cpu_before  # the hub process: its loop, and the endpoint's threads
    finally:
        hub.stop()
    return total / seconds, cpu / max(total, 1), quiet, loaded


def dispatch_latencies(spool: Path, marks: Marks, count: int, until: float) -> list[float]:
    latencies = []
    while len(latencies) < count and time.time() < until:
        started = time.time()
        trivialci.emit("probe", {}, spool=spool)
        latencies.append(wait_for(marks.next, 30, "the probe's first line") - started)
        time.sleep(0.05)
    return latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=40)
    parser.add_argument("--builds", type=int, default=12)
    parser.add_argument("--load-seconds", type=float, default=8.0)
    parser.add_argument("--clients", type=int, default=4)
    args = parser.parse_args()
    args.load_seconds = min(args.load_seconds, 10.0)
    with Scratch() as tmp:
        posted, emitted = delivered(tmp, args.samples)
        hooked, by_emit = started(tmp, args.builds)
        rate, cpu_per_request, quiet, loaded = load(tmp, args.load_seconds, args.clients, 200)
    rows = [["POST -> event in inbox (202)", ms(median(posted)), ms(percentile(posted, 90)), spread(posted, 1e3),
             f"{ratio(median(posted), median(emitted)):.2f} x emit() ({ms(median(emitted))} ms)"],
            ["POST -> build started", ms(median(hooked)), ms(percentile(hooked, 90)), spread(hooked, 1e3),
             f"{ratio(median(hooked), median(by_emit)):.2f} x emit ({ms(median(by_emit))} ms)"],
            ["hub dispatch, no load", ms(median(quiet)), ms(percentile(quiet, 90)), spread(quiet, 1e3), ""],
            [f"hub dispatch, {rate:.0f} req/s", ms(median(loaded)), ms(percentile(loaded, 90)), spread(loaded, 1e3),
             f"{ratio(median(loaded), median(quiet)):.2f} x no load"]]
    print_table(f"webhooks ({args.samples} deliveries, {args.builds} builds each way, {args.load_seconds:g} s "
                f"of load from {args.clients} clients: {rate:.0f} signed requests/s verified, "
                f"{cpu_per_request * 1e6:.0f} us of the hub's CPU each)",
                ["what", "p50 ms", "p90 ms", "min-max ms", "ratio"], rows)


if __name__ == "__main__":
    main()
