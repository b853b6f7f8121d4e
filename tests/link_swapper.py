"""A hostile build's helper: keeps swapping each file of a directory for a link to a secret, and back.

    python link_swapper.py ROOT STAGING SECRET STOP FILES SWAP_DIRECTORY

Makes STAGING and ROOT/f000.. (FILES of them), writes STAGING/started, then,
until STOP exists (at most a minute), renames over each file, at random, either
a link to SECRET or a new regular file, every few milliseconds; with
SWAP_DIRECTORY `yes` also ROOT/sub for a link to SECRET's directory and back.
Whatever reads ROOT meanwhile must never store what a link points to.
"""

import os
import random
import sys
import time


def main(root, staging, secret, stop, files, swap_directory):
    names = [f"f{number:03d}" for number in range(int(files))]
    os.makedirs(staging, exist_ok=True)
    for name in names:
        replace(os.path.join(root, name), staging, None)
    open(os.path.join(staging, "started"), "w").close()
    deadline = time.monotonic() + 60
    while not os.path.exists(stop) and time.monotonic() < deadline:
        for _ in range(len(names)):  # any file is a link half of the time
            replace(os.path.join(root, random.choice(names)), staging, secret if random.random() < 0.5 else None)
        if swap_directory == "yes":
            swap_sub(root, staging, os.path.dirname(secret))


def replace(path, staging, link_to):
    """Put a link to `link_to` (a regular file when None) at `path` with one rename."""
    staged = os.path.join(staging, "next")
    if link_to:
        os.symlink(link_to, staged)
    else:
        with open(staged, "wb") as out:
            out.write(b"artifact")
    os.rename(staged, path)


def swap_sub(root, staging, secret_dir):
    os.rename(os.path.join(root, "sub"), os.path.join(staging, "sub"))
    os.symlink(secret_dir, os.path.join(root, "sub"))
    os.unlink(os.path.join(root, "sub"))
    os.rename(os.path.join(staging, "sub"), os.path.join(root, "sub"))


if __name__ == "__main__":
    main(*sys.argv[1:7])
