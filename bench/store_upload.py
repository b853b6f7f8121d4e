"""Artifact upload: MB/s into an S3 store (moto's server on 127.0.0.1) against a directory store.

Two loads, each as a worker uploads a job's output (put_tree of a directory):

    many small   FILES files of 1 MiB
    one large    one file of LARGE MiB (a multipart upload on S3)

Each run uploads into a fresh prefix (the S3 bucket and the directory are made
once); the median over RUNS runs is reported, with the spread, and the ratio
S3 / directory. moto keeps objects in memory and speaks HTTP on loopback: this
measures the backend's own cost (HTTP, signing, multipart), not a network's.

    .venv/bin/python bench/store_upload.py
    .venv/bin/python bench/store_upload.py --files 50 --large 100 --runs 7

Needs boto3 and moto[server] (pip install -e '.[test]'). Everything is made
under $TMPDIR (removed at the end), and the server is stopped on the way out.
"""

import argparse
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import boto3

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _util import PYTHON, Scratch, median, print_table, ratio, spawn, spread, stop, wait_for  # noqa: E402
from trivialci.store import open_store  # noqa: E402

MIB = 1 << 20
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench", "AWS_DEFAULT_REGION": "us-east-1",
               "AWS_EC2_METADATA_DISABLED": "true"}


def main() -> None:
    options = arguments()
    with Scratch("trivialci-bench-store-") as tmp:
        loads = {f"{options.files} x 1 MiB": make_files(tmp / "small", options.files, MIB),
                 f"1 x {options.large} MiB": make_files(tmp / "large", 1, options.large * MIB)}
        stores = {"directory": open_store(tmp / "store"), "s3 (moto)": s3_store(tmp)}
        rows = [row(name, directory, stores, options.runs) for name, directory in loads.items()]
    print_table(f"Artifact upload (put_tree), MB/s, median of {options.runs} runs [spread]",
                ["load", "directory", "s3 (moto)", "s3 / directory"], rows)


def arguments():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=20, help="how many 1 MiB files (default 20)")
    parser.add_argument("--large", type=int, default=50, help="MiB in the one large file (default 50)")
    parser.add_argument("--runs", type=int, default=5, help="runs of each upload (default 5)")
    return parser.parse_args()


def make_files(directory: Path, count: int, size: int) -> Path:
    directory.mkdir()
    for number in range(count):
        (directory / f"artifact-{number:03d}.bin").write_bytes(os.urandom(size))
    return directory


def s3_store(tmp: Path):
    """An S3 store in a new bucket of a moto server started for this run (stopped on exit by _util)."""
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    with open(tmp / "moto.log", "wb") as log:
        server = spawn([PYTHON, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)], stdin=subprocess.DEVNULL,
                       stdout=log, stderr=log)
    wait_for(lambda: accepting(port) or server.poll() is not None, 60, "the moto S3 server")
    if server.poll() is not None:
        raise SystemExit(f"the moto S3 server exited with {stop(server)}: see {tmp / 'moto.log'}")
    os.environ.update(CREDENTIALS, TRIVIALCI_S3_ENDPOINT_URL=endpoint)
    boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket="bench")
    return open_store("s3://bench/ci")


def row(name: str, directory: Path, stores: dict, runs: int) -> list:
    megabytes = sum(path.stat().st_size for path in directory.iterdir()) / 1e6
    speeds = {label: [megabytes / timed_upload(store, directory, run) for run in range(runs)]
              for label, store in stores.items()}
    cells = [f"{median(values):.0f} [{spread(values, digits=0)}]" for values in speeds.values()]
    return [name, *cells, f"{ratio(median(speeds['s3 (moto)']), median(speeds['directory'])):.2f}"]


def timed_upload(store, directory: Path, run: int) -> float:
    started = time.perf_counter()
    store.put_tree(f"jobs/{directory.name}-{run}/files", directory)
    return time.perf_counter() - started


def accepting(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


if __name__ == "__main__":
    main()
