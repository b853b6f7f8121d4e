"""What the benchmarks share: statistics, scratch spools, real hub processes, tables.

Every benchmark drives the real thing: `python -m trivialci hub` processes on
temp spools, with the interpreter that runs the benchmark. Everything a
benchmark starts is stopped, and every temp directory removed, on the way out
(also on Ctrl-C or SIGTERM).
"""

import atexit
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PYTHON = sys.executable
ROOT = Path(__file__).resolve().parent.parent
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")

_live_processes: set[subprocess.Popen] = set()
_live_dirs: set[Path] = set()


# --- statistics -------------------------------------------------------------

def percentile(values, q: float) -> float:
    """The q-th percentile (0..100), interpolated between the two nearest ranks."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    rank = (len(ordered) - 1) * q / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def median(values) -> float:
    return statistics.median(values) if values else float("nan")


def iqr(values) -> float:
    return percentile(values, 75) - percentile(values, 25)


def block_medians(values, blocks: int) -> list[float]:
    """Medians of `blocks` consecutive slices: how much the median moves over the run."""
    size = max(1, len(values) // blocks)
    return [median(values[i:i + size]) for i in range(0, size * blocks, size) if values[i:i + size]]


def ratio(value: float, baseline: float) -> float:
    return value / baseline if baseline else float("nan")


# --- formatting -------------------------------------------------------------

def ms(seconds: float) -> str:
    return f"{seconds * 1e3:.2f}"


def spread(values, scale=1.0, digits=2) -> str:
    return f"{min(values) * scale:.{digits}f}-{max(values) * scale:.{digits}f}" if values else "-"


def print_table(title: str, headers: list[str], rows: list[list]) -> None:
    cells = [headers] + [[str(cell) for cell in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    print(f"\n{title}")
    for number, row in enumerate(cells):
        print("  " + "  ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths))))
        if number == 0:
            print("  " + "  ".join("-" * w for w in widths))


def verdict(met: bool) -> str:
    return "MET" if met else "MISSED"


# --- scratch directories ----------------------------------------------------

class Scratch:
    """A temp directory, removed on exit: `with Scratch() as tmp:`."""

    def __init__(self, prefix: str = "trivialci-bench-", directory: str | None = None):
        self.path = Path(tempfile.mkdtemp(prefix=prefix, dir=directory))
        _live_dirs.add(self.path)

    def __enter__(self) -> Path:
        return self.path

    def __exit__(self, *exc) -> None:
        stop_all()  # a hub still running would write into what is being removed
        remove_dir(self.path)


def remove_dir(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
    _live_dirs.discard(path)


def write_script(directory: Path, name: str, text: str, executable: bool = False) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text(text)
    if executable:
        path.chmod(0o755)
    return path


# --- processes --------------------------------------------------------------

def spawn(argv, **popen_args) -> subprocess.Popen:
    """Popen that is remembered, so that it is stopped however the benchmark ends."""
    process = subprocess.Popen(argv, **popen_args)
    _live_processes.add(process)
    return process


def stop(process: subprocess.Popen, timeout: float = 20.0) -> int:
    """SIGTERM, then SIGKILL after `timeout`; reaped either way."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    _live_processes.discard(process)
    return process.returncode


class Hub:
    """A real `trivialci hub` process on `spool`; its stderr goes to a file beside the spool."""

    def __init__(self, spool: Path, pipeline: Path, *options, env: dict | None = None, python: str = PYTHON):
        self.spool = Path(spool)
        self.stderr_path = self.spool.with_name(self.spool.name + ".hub.stderr")
        argv = [python, "-m", "trivialci", "hub", "--spool", str(spool), "--pipeline", str(pipeline), *map(str, options)]
        with open(self.stderr_path, "wb") as stderr:
            self.process = spawn(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr,
                                 env={**os.environ, **(env or {})}, cwd=self.spool.parent)

    @property
    def pid(self) -> int:
        return self.process.pid

    def wait_ready(self, timeout: float = 20.0) -> "Hub":
        """Until the hub wrote its heartbeat: it holds the lock and watches its inbox."""
        wait_for(lambda: (self.spool / "hub.json").exists() or self.process.poll() is not None, timeout,
                 "the hub to start")
        if self.process.poll() is not None:
            raise RuntimeError(f"the hub exited with {self.process.returncode}:\n{self.stderr_tail()}")
        return self

    def wait_exit(self, timeout: float) -> int:
        try:
            code = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            raise RuntimeError(f"the hub did not exit within {timeout:g} s:\n{self.stderr_tail()}") from None
        _live_processes.discard(self.process)
        return code

    def stop(self) -> int:
        return stop(self.process)

    def stderr_tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.stderr_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no stderr)"


def wait_for(condition, timeout: float, what: str, interval: float = 0.005):
    """Poll `condition` until it is truthy; RuntimeError at the deadline."""
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)
    return value


# --- /proc ------------------------------------------------------------------

def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used (all its threads), from /proc/PID/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime, stime: fields 14 and 15


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


# --- leaving clean ----------------------------------------------------------

def stop_all() -> None:
    for process in list(_live_processes):
        stop(process, timeout=10.0)


def _clean_up() -> None:
    stop_all()
    for path in list(_live_dirs):
        remove_dir(path)


def _exit_on_signal(signum, frame) -> None:
    raise SystemExit(128 + signum)  # unwinds through the `with` blocks, then atexit runs


atexit.register(_clean_up)
signal.signal(signal.SIGTERM, _exit_on_signal)
