"""Build the example spool by running a real hub and a real worker, and copying their tree mid-flight.

    python spool-example/regenerate.py [DIR]        DIR defaults to spool-example/spool/

A hub (one script at a time) and a worker named w1 run on a temporary spool
with the scripts of spool-example/pipeline/. Events go in the way they go in
for real: trivialci.emit for programs, a plain write for the one a person drops
by hand. Once the slow build script runs and two more events wait in inbox/,
the tree is copied to DIR and both nodes are stopped.

Git keeps no empty directories, so every directory that was empty in the copy
gets an empty .gitkeep file (a dot-file: the node leaves it alone). Nothing
else in DIR is written by this script: every other file was written by the
node, its scripts or trivialci.emit.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import trivialci

HERE = Path(__file__).resolve().parent
PIPELINE = HERE / "pipeline"
DEFAULT_DEST = HERE / "spool"
WORKER = "w1"
HANDLED_FIRST = 4  # greet (done), lint (failed), greet.json by hand (failed), deploy (failed)


def wait_for(condition, timeout=15.0, interval=0.02, message="condition"):
    """Poll `condition` until it returns a truthy value; raise at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {message}")
        time.sleep(interval)


class NodeProcess:
    """A `trivialci hub|worker` process whose stderr goes to a file."""

    def __init__(self, name: str, args: list, workdir: Path):
        self.name = name
        self.stderr_path = workdir / f"{name}.stderr"
        env = {k: v for k, v in os.environ.items() if not k.startswith("TRIVIALCI_")}
        with open(self.stderr_path, "w") as stderr:
            self.proc = subprocess.Popen([sys.executable, "-m", "trivialci", *map(str, args)], cwd=workdir,
                                         env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr)

    def check_alive(self) -> bool:
        """True while it runs; a node that exited raises, with its log, instead of being waited for."""
        if self.proc.poll() is not None:
            raise RuntimeError(f"the {self.name} node exited with status {self.proc.returncode}:\n"
                               f"{self.stderr_path.read_text()}")
        return True

    def stop(self) -> None:
        """SIGTERM (the node stops its scripts), SIGKILL if it does not exit in time."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)


def build(dest: Path, workdir: Path, wait_for=wait_for, heartbeat_lists_build: bool = True) -> Path:
    """Run the nodes on `workdir`/spool, copy the tree to `dest` mid-flight; stop everything.

    With `heartbeat_lists_build`, the copy waits (up to 5 s) for the hub's next
    heartbeat, so that hub.json lists the running build; without it hub.json may
    still say "running": [] (same keys, same structure, a few seconds sooner).
    """
    spool = Path(os.path.abspath(workdir)) / "spool"
    spool.parent.mkdir(parents=True, exist_ok=True)
    nodes = []
    try:
        nodes.append(NodeProcess("hub", ["hub", "--spool", spool, "--pipeline", PIPELINE, "--jobs", 1,
                                          "--grace", 0.5, "--settle", 0.2], workdir))
        nodes.append(NodeProcess(WORKER, ["worker", "--spool", spool, "--name", WORKER, "--kind", "build",
                                           "--pipeline", PIPELINE, "--grace", 0.5], workdir))
        bring_to_mid_flight(spool, nodes, wait_for, heartbeat_lists_build)
        copy_tree(spool, Path(dest))
    finally:
        for node in nodes:
            node.stop()
        stop_leftover_scripts(spool)
    return Path(dest)


def bring_to_mid_flight(spool: Path, nodes: list, wait_for, heartbeat_lists_build: bool) -> None:
    """Handled events in done/ and failed/, build running in work/, two events waiting in inbox/."""
    def watching(condition):
        return lambda: all(node.check_alive() for node in nodes) and condition()

    workers_beat = spool / "workers" / WORKER / "worker.json"
    wait_for(watching(lambda: (spool / "hub.json").exists() and workers_beat.exists()),
             message="the hub and the worker to start")
    send_the_first_events(spool)
    wait_for(watching(lambda: len(results(spool)) == HANDLED_FIRST), message="the first events to be recorded")
    trivialci.emit("build", {"branch": "main", "seconds": 20, "_timeout": 60}, spool=spool)
    build_id = wait_for(watching(lambda: running_build(spool)), message="the build script to start")
    trivialci.emit("greet", {"name": "Linus"}, spool=spool)
    trivialci.emit("lint", {"path": "spool-example/"}, spool=spool)
    if heartbeat_lists_build:  # hub.json is rewritten every 5 s: wait until it lists the running build
        wait_for(watching(lambda: build_id in read_json(spool / "hub.json").get("running", [])),
                 timeout=15, message="the hub's heartbeat to list the build")


def send_the_first_events(spool: Path) -> None:
    """One for each ending: done, failed (exit 1), refused (bad JSON), refused (no script)."""
    trivialci.emit("greet", {"name": "Ada"}, spool=spool)
    trivialci.emit("lint", {"path": "docs/"}, spool=spool)
    drop_by_hand(spool / "inbox" / "greet.json", '{"name": "Grace"\n')  # the closing brace is missing
    trivialci.emit("deploy", {"env": "staging"}, spool=spool)


def drop_by_hand(path: Path, text: str) -> None:
    """What `echo TEXT > inbox/NAME` does: no tmp/, no rename."""
    with open(path, "w") as handle:
        handle.write(text)


def results(spool: Path) -> list[Path]:
    return [*spool.glob("done/*/*.result.json"), *spool.glob("failed/*/*.result.json")]


def running_build(spool: Path) -> str | None:
    """The id of the build event in work/ once its script has printed its first line."""
    for log in (spool / "work").glob("*-build.*.log"):
        if log.read_text().startswith("building"):
            return log.name[: -len(".log")]
    return None


def read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def copy_tree(source: Path, dest: Path) -> None:
    """Copy a live spool; files that vanish meanwhile (a heartbeat being staged in tmp/) are left out."""
    prepare_destination(dest)
    for root, _, files in os.walk(source):
        target = dest / Path(root).relative_to(source)
        target.mkdir(exist_ok=True)
        for name in files:
            try:
                shutil.copy2(Path(root) / name, target / name, follow_symlinks=False)
            except FileNotFoundError:
                pass
    for copied in [p for p in dest.rglob("*") if p.is_file()]:
        if not (source / copied.relative_to(dest)).exists():
            copied.unlink()
    keep_empty_directories(dest)


def prepare_destination(dest: Path) -> None:
    if dest.exists() and any(dest.iterdir()) and not (dest / "inbox").is_dir():
        raise SystemExit(f"{dest} is not empty and does not look like a spool: not replacing it")
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)


def keep_empty_directories(tree: Path) -> None:
    for directory in [tree, *(p for p in tree.rglob("*") if p.is_dir())]:
        if not any(directory.iterdir()):
            (directory / ".gitkeep").touch()


def stop_leftover_scripts(spool: Path) -> None:
    """Kill any script process of these two nodes that outlived them (the nodes normally stop them)."""
    marks = {f"TRIVIALCI_NODE_DIR={spool}".encode(), f"TRIVIALCI_NODE_DIR={spool / 'workers' / WORKER}".encode()}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            environment = set((entry / "environ").read_bytes().split(b"\0"))
        except OSError:
            continue
        if environment & marks:
            try:
                os.kill(int(entry.name), signal.SIGKILL)
            except OSError:
                pass


def main(argv: list[str]) -> None:
    dest = Path(argv[1]) if len(argv) > 1 else DEFAULT_DEST
    with tempfile.TemporaryDirectory(prefix="trivialci-example-") as workdir:
        build(dest, Path(workdir))
    print(dest)


if __name__ == "__main__":
    main(sys.argv)
