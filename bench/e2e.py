"""End-to-end overhead: from `git push` to a PASSED job.json in the artifact store.

The real thing, as tests/test_flow.py sets it up: a hub on the shipped
pipeline (--tick 0.2, a directory store) that has already booted its worker
(a warm-up push) and whose worker is idle; a bare origin with
contrib/post-receive installed (git config trivialci.spool; a sh hook that
writes the event file itself); a `.trivialci/build` that writes its own start and end
times to $TRIVIALCI_ARTIFACTS/times.txt.

One sample: commit, take the time just before `git push`, stop the clock when
jobs/JOB/job.json of that commit is in the store with PASSED, and subtract the
build's own run time (end - start from times.txt). Pushes go one at a time;
the next one waits until the worker is idle again and the hub's inbox is empty.

    bare push    the same push with the hook switched off: git's own time (baseline)
    hook         post-receive -> trivialci emit -> hub -> worker -> store
    gitwatcher   no hook; `trivialci gitwatcher --interval 1` polls the origin

Bare and hook samples are interleaved (the hook is renamed away for a bare
push). The pushes run with the venv's bin/ first on PATH (for a hook that
runs trivialci). The hub and its worker run with their fork servers (the default).

    .venv/bin/python bench/e2e.py
    .venv/bin/python bench/e2e.py --pushes 20 --interval 1
"""

import argparse
import calendar
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _util import PYTHON, ROOT, Hub, Scratch, median, ms, percentile, print_table, ratio, spawn, spread, stop, \
    verdict, wait_for  # noqa: E402

from trivialci.up import local_worker_pids  # noqa: E402

BUILD = """#!/bin/sh
start=$(date +%s.%N)
end=$(date +%s.%N)
echo "$start $end" > "$TRIVIALCI_ARTIFACTS/times.txt"
"""
GOAL_HOOK_MS = 100.0
GOAL_WATCHER_EXTRA_MS = 150.0
BRANCH = "main"


def git(*args, cwd=None, env=None) -> str:
    return subprocess.run(["git", *map(str, args)], cwd=cwd, env=env, check=True, capture_output=True,
                          text=True).stdout.strip()


class Origin:
    """A bare origin with the post-receive hook, and a clone that commits and pushes."""

    def __init__(self, root: Path, spool: Path):
        self.bare, self.work = root / "origin.git", root / "clone"
        self.hook = self.bare / "hooks" / "post-receive"
        self.env = {**os.environ, "PATH": f"{Path(PYTHON).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
        self.env.pop("TRIVIALCI_SPOOL", None)  # the hook's spool comes from the origin's config
        git("init", "-q", "--bare", "-b", BRANCH, self.bare)
        git("-C", self.bare, "config", "trivialci.spool", spool)
        git("init", "-q", "-b", BRANCH, self.work)
        for key, value in (("user.email", "bench@example.invalid"), ("user.name", "bench")):
            git("config", key, value, cwd=self.work)
        git("remote", "add", "origin", self.bare, cwd=self.work)
        build = self.work / ".trivialci" / "build"
        build.parent.mkdir()
        build.write_text(BUILD)
        build.chmod(0o755)
        git("add", "-A", cwd=self.work)
        self.hook.write_bytes((ROOT / "contrib" / "post-receive").read_bytes())
        self.hook.chmod(0o755)

    def commit(self) -> str:
        git("commit", "-q", "--allow-empty", "-m", "bench", cwd=self.work)
        return git("rev-parse", "HEAD", cwd=self.work)

    def push(self) -> tuple[float, float]:
        """(time just before `git push`, time it returned)."""
        started = time.time()
        subprocess.run(["git", "push", "-q", "origin", BRANCH], cwd=self.work, env=self.env, check=True,
                       stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return started, time.time()

    def hook_enabled(self, enabled: bool) -> None:
        off = self.hook.with_name("post-receive.off")
        if enabled and off.exists():
            off.rename(self.hook)
        elif not enabled and self.hook.exists():
            self.hook.rename(off)


class CI:
    """The hub, the store, and what the worker and the hub leave behind."""

    def __init__(self, root: Path):
        self.spool, self.store = root / "spool", root / "store"
        self.hub = Hub(self.spool, ROOT / "pipeline", "--store", f"file://{self.store}", "--workdir",
                       root / "work" / "hub", "--tick", "0.2").wait_ready()
        self.read_jobs: set[str] = set()

    def job_record(self, sha: str) -> tuple[float, dict] | None:
        """(time it was seen, job.json) of the PASSED job of `sha`, or None; reads each job.json once."""
        for job in os.listdir(self.store / "jobs") if (self.store / "jobs").is_dir() else []:
            if job in self.read_jobs:
                continue
            record = _read_json(self.store / "jobs" / job / "job.json")
            if record is None:
                continue  # no job.json yet: it is written last
            self.read_jobs.add(job)
            if record.get("sha") == sha and record.get("status") == "PASSED":
                return time.time(), record
        return None

    def wait_passed(self, sha: str, timeout: float = 60.0) -> tuple[float, dict]:
        return wait_for(lambda: self.job_record(sha), timeout, f"the PASSED job.json of {sha[:12]}", interval=0.002)

    def build_times(self, job: str) -> tuple[float, float]:
        start, end = (self.store / "jobs" / job / "files" / "times.txt").read_text().split()
        return float(start), float(end)

    def wait_idle(self, timeout: float = 60.0) -> None:
        """Until the worker is idle in the hub's state and no event but a tick waits for the hub."""
        def idle():
            worker = _read_json(self.spool / "state" / "workers" / "build-1.json")
            waiting = [n for n in os.listdir(self.spool / "inbox") if not n.startswith(("tick.", "."))]
            jobs = [_read_json(p) for p in (self.spool / "state" / "jobs").glob("*.json")]
            final = all(j and j["status"] in ("PASSED", "FAILED", "CANCELLED", "SUPERSEDED") for j in jobs)
            return worker and worker["state"] == "idle" and not waiting and final
        wait_for(idle, timeout, "the worker to be idle and the hub's inbox empty", interval=0.01)

    def milestones(self, sha: str) -> dict[str, float]:
        """When the event of `sha` was emitted, handled by the hub, and its start_work began (epoch seconds)."""
        found = {}
        update = self._record_of(self.spool, "branch_update", lambda p: p.get("new") == sha)
        if update:
            found["event emitted"] = _name_time(update["event"])
            found["branch_update started"] = _iso(update["started"])
            found["branch_update ended"] = _iso(update["ended"])
        start = self._record_of(self.spool / "workers" / "build-1", "start_work", lambda p: p.get("sha") == sha)
        if start:
            found["start_work started"] = _iso(start["started"])
        return found

    @staticmethod
    def _record_of(node_root: Path, event_type: str, wanted) -> dict | None:
        for event in sorted((node_root / "done").glob(f"*/*-{event_type}.*.json"), reverse=True):
            if not event.name.endswith(".result.json") and wanted(_read_json(event) or {}):
                return _read_json(event.with_name(event.name[:-5] + ".result.json"))
        return None

    def stop(self) -> None:
        """The hub, then the workers it booted (they are not our children)."""
        self.hub.stop()
        workers = local_worker_pids(self.spool)
        for pid in workers:
            _signal(pid, signal.SIGTERM)
        wait_for(lambda: not [pid for pid in workers if _alive(pid)], 30, "the booted worker to stop", 0.05)


def _read_json(path: Path):
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


def _iso(stamp: str) -> float:
    """Epoch seconds of '2026-11-25T02:54:39.109044Z' (the .result.json times)."""
    whole, _, fraction = stamp.rstrip("Z").partition(".")
    return calendar.timegm(time.strptime(whole, "%Y-%m-%dT%H:%M:%S")) + float("0." + (fraction or "0"))


def _name_time(name: str) -> float:
    """Epoch seconds of the emit time in an event name: TYPE.YYYYmmddTHHMMSS.ffffffZ.HOST.PID.HEX.json."""
    stamp = name.split(".", 1)[1][:22]
    return calendar.timegm(time.strptime(stamp[:15], "%Y%m%dT%H%M%S")) + float("0." + stamp[16:22])


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


# --- one sample --------------------------------------------------------------

def sample_bare(origin: Origin) -> float:
    origin.commit()
    origin.hook_enabled(False)
    try:
        started, returned = origin.push()
    finally:
        origin.hook_enabled(True)
    return returned - started


def sample_build(origin: Origin, ci: CI) -> dict:
    """One push built end to end: {'total', 'build', 'overhead', 'push', milestones...} in seconds."""
    sha = origin.commit()
    started, returned = origin.push()
    seen, record = ci.wait_passed(sha)
    build_start, build_end = ci.build_times(record["job"])
    result = {"total": seen - started, "build": build_end - build_start, "push": returned - started}
    result["overhead"] = result["total"] - result["build"]
    result["marks"] = {"git push returned": returned, "build started": build_start, "build ended": build_end,
                       "job.json seen": seen}
    result["sha"], result["started"] = sha, started
    ci.wait_idle()
    return result


def add_milestones(ci: CI, samples: list[dict]) -> None:
    """Read the hub's and the worker's records (all written by now) into each sample's marks."""
    for sample in samples:
        sample["marks"].update(ci.milestones(sample["sha"]))
        sample["marks"] = {name: when - sample["started"] for name, when in sample["marks"].items()}


# --- the run -------------------------------------------------------------------

def warm_up(origin: Origin, ci: CI) -> None:
    """The first push boots the worker and makes the mirrors; nothing of it is measured."""
    sample_build(origin, ci)
    sample_build(origin, ci)


def run_hook_and_bare(origin: Origin, ci: CI, pushes: int) -> tuple[list[dict], list[float]]:
    hooked, bare = [], []
    for _ in range(pushes):
        bare.append(sample_bare(origin))
        hooked.append(sample_build(origin, ci))
    return hooked, bare


def run_gitwatcher(origin: Origin, ci: CI, pushes: int, interval: float, root: Path) -> list[dict]:
    origin.hook_enabled(False)
    with open(root / "gitwatcher.stderr", "wb") as stderr:
        watcher = spawn([PYTHON, "-m", "trivialci", "gitwatcher", "--spool", str(ci.spool), "--repo",
                         str(origin.bare), "--interval", str(interval)], stdin=subprocess.DEVNULL,
                        stdout=subprocess.DEVNULL, stderr=stderr)
    try:
        state = ci.spool / "state" / "gitwatcher"
        wait_for(lambda: state.is_dir() and any(state.iterdir()), 30, "the gitwatcher's first poll")
        ci.wait_idle()  # its first poll announces main again (its state was empty): that build ends first
        return [sample_build(origin, ci) for _ in range(pushes)]
    finally:
        stop(watcher)


def report(hooked: list[dict], bare: list[float], watched: list[dict], interval: float) -> None:
    bare_median = median(bare)
    rows = [["bare git push, no hook (baseline)", ms(bare_median), spread(bare, 1e3), "-", "1.0"]]
    for label, samples in (("hook: push -> PASSED job.json", hooked),
                           (f"gitwatcher --interval {interval:g}: push -> PASSED job.json", watched)):
        overhead = [s["overhead"] for s in samples]
        rows.append([label, ms(median(overhead)), spread(overhead, 1e3), ms(percentile(overhead, 90)),
                     f"{ratio(median(overhead), bare_median):.1f}"])
    print_table(f"End to end, build run time subtracted ({len(hooked)} pushes per path; ms)",
                ["path", "median", "min-max", "p90", "x bare push"], rows)
    print_table("Hook path, the build itself and the push alone (ms)",
                ["what", "median", "min-max"],
                [["build script's own run time", ms(median([s["build"] for s in hooked])),
                  spread([s["build"] for s in hooked], 1e3)],
                 ["git push with the hook (until it returns)", ms(median([s["push"] for s in hooked])),
                  spread([s["push"] for s in hooked], 1e3)]])
    print_milestones(hooked)
    hook_median = median([s["overhead"] for s in hooked])
    watcher_worst = max(s["overhead"] for s in watched)
    watcher_goal = interval * 1e3 + GOAL_WATCHER_EXTRA_MS
    print(f"\ngoal, hook: median overhead under {GOAL_HOOK_MS:.0f} ms: {ms(hook_median)} ms -> "
          f"{verdict(hook_median * 1e3 < GOAL_HOOK_MS)}")
    print(f"goal, gitwatcher: under interval + {GOAL_WATCHER_EXTRA_MS:.0f} ms = {watcher_goal:.0f} ms: "
          f"median {ms(median([s['overhead'] for s in watched]))} ms, worst {ms(watcher_worst)} ms -> "
          f"{verdict(watcher_worst * 1e3 < watcher_goal)} (worst case)")


def print_milestones(hooked: list[dict]) -> None:
    """Where the hook path's time goes: medians of each mark, from just before `git push`."""
    names = {name for sample in hooked for name in sample["marks"]}
    medians = sorted((median([s["marks"][name] for s in hooked if name in s["marks"]]), name) for name in names)
    rows, previous = [], 0.0
    for at, name in medians:
        rows.append([name, ms(at), ms(at - previous)])
        previous = at
    print_table("Hook path, milestones after `git push` starts (medians, ms)", ["milestone", "at", "step"], rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pushes", type=int, default=12, help="pushes per path (at least 10)")
    parser.add_argument("--interval", type=float, default=1.0, help="the gitwatcher's --interval")
    args = parser.parse_args()
    with Scratch("trivialci-e2e-") as root:
        ci = CI(root)
        try:
            origin = Origin(root, ci.spool)
            warm_up(origin, ci)
            hooked, bare = run_hook_and_bare(origin, ci, args.pushes)
            watched = run_gitwatcher(origin, ci, args.pushes, args.interval, root)
        except BaseException:
            print(ci.hub.stderr_tail(), file=sys.stderr)
            raise
        finally:
            ci.stop()
        add_milestones(ci, hooked)
        report(hooked, bare, watched, args.interval)


if __name__ == "__main__":
    main()
