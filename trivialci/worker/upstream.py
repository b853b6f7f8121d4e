"""A later stage's inputs: the artifacts of the jobs it takes them from, fetched from the store before its build.

    WORKDIR/upstream/JOB/KIND/...   the files of the upstream job of KIND (its jobs/UP/files/... in the store):
                                    $TRIVIALCI_UPSTREAM/KIND/ in the build, read-only in the sandbox;
                                    made afresh for each attempt, removed when the job ends

A job's "upstream" ([{"job", "kind"}], checked by jobs.check_upstream) names them; a job of the first stage has
none, and gets an empty $TRIVIALCI_UPSTREAM. An upstream job without a record in the store (jobs/UP/job.json),
a worker without a store, or a file that cannot be read or written fails the job with the reason, before its
build starts. Keys come from the store's listing and pass its key grammar (no '..', no empty segment); each
becomes a path made with spool.layout.under, and each file is created with O_EXCL|O_NOFOLLOW in a directory
this worker just made: nothing a build or a store left can redirect a write.
"""

import os
import shutil
from pathlib import Path

from ..errors import TrivialCiError
from ..spool.atomic import remove_if_present
from ..spool.layout import under
from ..store import StoreMissing, open_store

FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


def fetch_upstream(upstream: list[dict], store_url: str | None, directory: Path) -> str | None:
    """`directory` made afresh and filled with each upstream job's files under KIND/; why not (the reason the
    job FAILED), or None."""
    remove_tree_or_link(directory)
    directory.mkdir(parents=True)
    if upstream and not store_url:
        return "it takes the artifacts of an earlier stage, and this worker has no artifact store (TRIVIALCI_STORE)"
    store = open_store(store_url) if upstream else None
    for item in upstream:
        try:
            count = _fetch_job(store, item["job"], directory / item["kind"])
        except (TrivialCiError, OSError) as error:
            return f"the artifacts of {item['kind']} ({item['job']}) could not be fetched from {store_url}: {error}"
        print(f"fetched {count} files of {item['kind']} ({item['job']}) into $TRIVIALCI_UPSTREAM/{item['kind']}/")
    return None


def _fetch_job(store, job: str, target: Path) -> int:
    """The files of one upstream job into `target`; how many. StoreMissing when the job has no record."""
    try:
        store.get_bytes(f"jobs/{job}/job.json")
    except StoreMissing:
        raise StoreMissing(f"job {job} has no record in the store (did it end, and was it stored?)") from None
    target.mkdir()
    prefix = f"jobs/{job}/files/"
    keys = store.list_keys(prefix)
    for key in keys:
        _fetch_file(store, key, under(target, *key[len(prefix):].split("/")))
    return len(keys)


def _fetch_file(store, key: str, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with store.open_value(key) as value:
        fd = os.open(path, FILE_FLAGS, 0o644)
        with os.fdopen(fd, "wb") as file:
            for chunk in value.chunks():
                file.write(chunk)


def remove_tree_or_link(path: Path) -> None:
    """Remove a directory and what it holds, or the link or file a build left in its place (never its target)."""
    if path.is_symlink() or path.is_file():
        remove_if_present(path)
    else:
        shutil.rmtree(path, ignore_errors=True)
