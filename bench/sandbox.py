"""Sandbox start cost: a trivial build (`#!/bin/sh`, `exit 0`) run as a plain child and inside bwrap.

What a worker does for each build, from the policy to the exit status, on a
real worktree of a real mirror (`trivialci.git.Mirror`), with a spool, a
workdir and a pipeline to hide as a worker has them:

    unsandboxed   Sandbox(None): Popen(script), wait (the baseline, as with --sandbox off)
    sandboxed     Sandbox.from_environment() (bwrap probed once, cached), its command: Popen(bwrap ... script), wait
    sandboxed, no network   the same with TRIVIALCI_BUILD_NETWORK=none (a network namespace more)

Runs alternate between the variants, so that a change of load hits them alike.

    .venv/bin/python bench/sandbox.py
    .venv/bin/python bench/sandbox.py --runs 200

The end-to-end cost with the sandbox on is bench/e2e.py (the sandbox is on by
default; TRIVIALCI_SANDBOX=off in its environment gives the baseline).
"""

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _util import Scratch, median, percentile, print_table, ratio, spread  # noqa: E402
from trivialci.git.mirror import Mirror  # noqa: E402
from trivialci.worker.sandbox import Sandbox  # noqa: E402

BUILD = "#!/bin/sh\nexit 0\n"


def main() -> None:
    options = parse_args()
    with Scratch() as tmp:
        worktree, artifacts, mirror, env = set_up(tmp)
        variants = {
            "unsandboxed": lambda: Sandbox(None),
            "sandboxed": lambda: Sandbox.from_environment(env),
            "sandboxed, no network": lambda: Sandbox.from_environment({**env, "TRIVIALCI_BUILD_NETWORK": "none"}),
        }
        times = {name: [] for name in variants}
        for name, policy in variants.items():  # warm: bwrap probed, caches filled
            run_build(policy, worktree, artifacts, mirror)
        for _ in range(options.runs):
            for name, policy in variants.items():
                times[name].append(run_build(policy, worktree, artifacts, mirror))
        report(times, options.runs)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=100, help="builds of each variant [100]")
    return parser.parse_args()


def set_up(tmp: Path) -> tuple[Path, Path, Path, dict]:
    """A one-commit repository, its mirror and a worktree; the worker's environment naming its paths."""
    origin, workdir = tmp / "origin", tmp / "workdir"
    git("init", "-q", "-b", "main", origin)
    script = origin / ".trivialci" / "build"
    script.parent.mkdir()
    script.write_text(BUILD)
    script.chmod(0o755)
    git("-C", origin, "add", "-A")
    git("-C", origin, "-c", "user.name=b", "-c", "user.email=b@example.invalid", "commit", "-q", "-m", "build")
    mirror = Mirror(workdir, str(origin))
    mirror.update()
    worktree = mirror.add_worktree(git("-C", origin, "rev-parse", "HEAD"), workdir / "jobs" / "JOB")
    artifacts = workdir / "artifacts" / "JOB"
    artifacts.mkdir(parents=True)
    for name in ("spool", "pipeline"):
        (tmp / name).mkdir()
    env = {**os.environ, "TRIVIALCI_SPOOL": str(tmp / "spool"), "TRIVIALCI_WORKDIR": str(workdir),
           "TRIVIALCI_PIPELINE": str(tmp / "pipeline"), "TRIVIALCI_SANDBOX": "on"}
    return worktree, artifacts, mirror.path, env


def run_build(policy, worktree: Path, artifacts: Path, mirror: Path) -> float:
    """Seconds from choosing the policy to the build's exit status, as jobrun does it."""
    started = time.perf_counter()
    sandbox = policy()
    command = sandbox.command([str(worktree / ".trivialci" / "build")], worktree, writable=(worktree, artifacts),
                              readable=(mirror,))
    build = subprocess.Popen(command, cwd=worktree, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, env=sandbox.environment(), start_new_session=True)
    if build.wait() != 0:
        raise RuntimeError(f"the build failed: {command}")
    return time.perf_counter() - started


def report(times: dict[str, list[float]], runs: int) -> None:
    baseline = median(times["unsandboxed"])
    rows = [[name, f"{median(values) * 1e3:.2f}", f"{percentile(values, 10) * 1e3:.2f}-"
             f"{percentile(values, 90) * 1e3:.2f}", spread(values, 1e3), f"{ratio(median(values), baseline):.2f}",
             f"{(median(values) - baseline) * 1e3:+.2f}"] for name, values in times.items()]
    print_table(f"a trivial build, policy to exit status ({runs} runs each, interleaved; ms)",
                ["variant", "median", "p10-p90", "min-max", "ratio", "added"], rows)


def git(*args) -> str:
    return subprocess.run(["git", *map(str, args)], check=True, capture_output=True, text=True).stdout.strip()


if __name__ == "__main__":
    main()
