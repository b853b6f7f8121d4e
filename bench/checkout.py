"""Checkout: a job's `git worktree add` from a warm mirror, against `git clone` from the origin.

The origin is a bare repository with a long history, made in seconds with
`git fast-import`: a first commit with FILES files, then one small change
per commit up to COMMITS commits. The mirror is `trivialci.git.Mirror`,
updated once before the runs (warm, as on a worker that has built before).

Each run, in turn and into a fresh directory (removed afterwards, untimed):

    worktree add     Mirror.add_worktree(HEAD sha): what a job does
    mirror update    Mirror.update() with nothing new: what a job does first
    clone            git clone --no-local file://ORIGIN (the pack protocol, as over a network)
    clone --depth 1  the same, shallow
    clone (local)    git clone ORIGIN with a plain path: hard links, same filesystem only

    .venv/bin/python bench/checkout.py
    .venv/bin/python bench/checkout.py --commits 2000 --files 500 --runs 3
    TMPDIR=/dev/shm .venv/bin/python bench/checkout.py     # on tmpfs: git's own cost, not the disk's

Everything is made under $TMPDIR (a fresh directory, removed at the end).
"""

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _util import Scratch, median, print_table, ratio, spread  # noqa: E402
from trivialci.git.mirror import Mirror  # noqa: E402

IDENTITY = b"Bench <bench@example.invalid>"
LINES_PER_FILE = 20


def main() -> None:
    options = parse_args()
    with Scratch() as tmp:
        origin, built_in = timed(lambda: build_origin(tmp / "origin.git", options.commits, options.files))
        mirror = Mirror(tmp / "workdir", str(origin))
        _, warmed_in = timed(mirror.update)
        head = git("rev-parse", "HEAD", cwd=origin).strip()
        describe(options, origin, built_in, warmed_in)
        times = measure(methods(mirror, origin, head), tmp, options.runs)
        report(times, options.runs)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--commits", type=int, default=20000, help="commits in the history [20000]")
    parser.add_argument("--files", type=int, default=5000, help="files in the tree [5000]")
    parser.add_argument("--runs", type=int, default=5, help="runs of each method [5]")
    return parser.parse_args()


def git(*args, cwd=None, stdin=None) -> str:
    done = subprocess.run(["git", *map(str, args)], cwd=cwd, input=stdin, capture_output=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"git {' '.join(map(str, args))}: {done.stderr.decode(errors='replace')}")
    return done.stdout.decode()


def timed(function):
    start = time.perf_counter()
    value = function()
    return value, time.perf_counter() - start


# --- the origin -------------------------------------------------------------

def build_origin(path: Path, commits: int, files: int) -> Path:
    """A bare repository with `commits` commits over `files` files, through one fast-import stream."""
    git("init", "-q", "--bare", "-b", "main", path)
    process = subprocess.Popen(["git", "fast-import", "--quiet"], cwd=path, stdin=subprocess.PIPE)
    try:
        for chunk in fast_import_stream(commits, files):
            process.stdin.write(chunk)
    finally:
        process.stdin.close()
    if process.wait() != 0:
        raise RuntimeError("git fast-import failed")
    git("repack", "-adq", cwd=path)  # one pack, deltified, as a server that has been gc'd
    return path


def fast_import_stream(commits: int, files: int):
    """The first commit adds every file; each later one changes one file (in turn)."""
    yield commit_block(1, [(n, 0) for n in range(files)])
    for number in range(2, commits + 1):
        yield commit_block(number, [((number - 2) % files, number)])


def commit_block(number: int, changes: list[tuple[int, int]]) -> bytes:
    message = f"change {number}\n".encode()
    parts = [b"commit refs/heads/main\n",
             b"committer %s %d +0000\n" % (IDENTITY, 1700000000 + number),
             b"data %d\n%s" % (len(message), message)]
    for file_number, version in changes:
        content = file_content(file_number, version)
        parts.append(b"M 100644 inline %s\ndata %d\n%s\n" % (file_path(file_number), len(content), content))
    return b"".join(parts)


def file_path(number: int) -> bytes:
    return b"src/d%03d/f%05d.txt" % (number // 100, number)


def file_content(number: int, version: int) -> bytes:
    lines = [b"file %d line %d: the quick brown fox jumps over the lazy dog\n" % (number, line)
             for line in range(LINES_PER_FILE)]
    lines[version % LINES_PER_FILE] = b"file %d version %d\n" % (number, version)
    return b"".join(lines)


# --- measuring --------------------------------------------------------------

def methods(mirror: Mirror, origin: Path, head: str) -> dict:
    """Name -> (make(dest), clean(dest)); only make is timed."""
    url = f"file://{origin}"
    return {
        "worktree add": (lambda dest: mirror.add_worktree(head, dest), mirror.remove_worktree),
        "mirror update": (lambda dest: mirror.update(), lambda dest: None),
        "clone": (lambda dest: git("clone", "-q", "--no-local", url, dest), shutil.rmtree),
        "clone --depth 1": (lambda dest: git("clone", "-q", "--depth", "1", url, dest), shutil.rmtree),
        "clone (local)": (lambda dest: git("clone", "-q", origin, dest), shutil.rmtree),
    }


def measure(candidates: dict, tmp: Path, runs: int) -> dict[str, list[float]]:
    """Seconds per run of each method; the methods take turns, so all see the same machine.

    Each timed step starts after sync(2). Nothing is removed until every run
    is done: ext4 makes the creation of files slow for a while after many
    deletions (it skips recently freed inodes), whoever creates them, and
    that would blur what git itself costs.
    """
    times = {name: [] for name in candidates}
    made = []
    for run in range(runs):
        for name, (make, clean) in candidates.items():
            dest = tmp / "jobs" / f"{run}-{name.replace(' ', '_')}"
            os.sync()
            _, seconds = timed(lambda: make(dest))
            times[name].append(seconds)
            made.append((clean, dest))
    for clean, dest in made:
        clean(dest)
    return times


def describe(options, origin: Path, built_in: float, warmed_in: float) -> None:
    size = sum(p.stat().st_size for p in (origin / "objects").rglob("*") if p.is_file())
    print(f"origin: {options.commits} commits, {options.files} files, {size / 1e6:.1f} MB of objects, "
          f"made in {built_in:.1f} s; first mirror clone {warmed_in:.2f} s; {options.runs} runs each")


def report(times: dict[str, list[float]], runs: int) -> None:
    baseline = median(times["worktree add"])
    rows = [[name, f"{median(values):.3f}", spread(values, digits=3), f"{ratio(median(values), baseline):.1f}x"]
            for name, values in times.items()]
    print_table(f"Checkout of HEAD ({runs} runs)", ["method", "median s", "min-max s", "vs worktree add"], rows)


if __name__ == "__main__":
    main()
