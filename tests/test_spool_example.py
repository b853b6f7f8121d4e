"""spool-example/: the checked-in spool is what the node really makes, and its README shows files it holds.

The example is rebuilt by running a real hub and worker (spool-example/regenerate.py)
and compared by structure: which files exist where, their names with times, hosts,
pids and random parts replaced by placeholders, and the keys of every JSON file.
When this fails after a change to the protocol, run `python spool-example/regenerate.py`,
update spool-example/README.md and docs/protocol.md, and commit all three.
"""

import importlib.util
import json
import os
import re
from collections import Counter
from pathlib import Path

from conftest import ROOT, wait_for

EXAMPLE = ROOT / "spool-example"
CHECKED_IN = EXAMPLE / "spool"
PLACEHOLDERS = [
    (re.compile(r"\A\d{4}-\d\d-\d\d\Z"), "DAY"),  # done/DAY/, failed/DAY/
    (re.compile(r"\A\d{4}-\d\d-\d\dT\d{6}\.\d{6}-"), "STAMP-"),  # work/STAMP-STEM...
    (re.compile(r"\A\d{6}\.\d{6}-"), "HHMMSS.ffffff-"),  # done/DAY/HHMMSS.ffffff-STEM...
    (re.compile(r"\.\d{8}T\d{6}\.\d{6}Z\.[A-Za-z0-9-]+\.\d+\.[0-9a-f]{6}\."), ".UTC.HOST.PID.RANDOM."),  # emit's names
]
# Names and ids that README.md shows: claimed and recorded names, event ids, emit's unique names.
SPOOL_NAME = re.compile(r"(?:\d{4}-\d\d-\d\dT)?\d{6}\.\d{6}-[A-Za-z0-9_.+=:,@-]+"
                        r"|[a-z][a-z0-9_]*\.\d{8}T\d{6}\.\d{6}Z\.[A-Za-z0-9.@_-]+")


def load_regenerate():
    spec = importlib.util.spec_from_file_location("regenerate", EXAMPLE / "regenerate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def placeholder_name(part: str) -> str:
    for pattern, placeholder in PLACEHOLDERS:
        part = pattern.sub(placeholder, part)
    return part


def content_kind(path: Path) -> str:
    """'keys a,b' for a JSON object, else 'text' or 'empty': contents beyond that change every run."""
    try:
        value = json.loads(path.read_bytes())
    except ValueError:
        return "text" if path.stat().st_size else "empty"
    return "keys " + ",".join(sorted(value)) if isinstance(value, dict) else type(value).__name__


def structure(tree: Path) -> tuple[list[str], list[str]]:
    """(directories, files with their content kind), names with placeholders, sorted."""
    directories, files = set(), Counter()
    for path in tree.rglob("*"):
        name = "/".join(placeholder_name(part) for part in path.relative_to(tree).parts)
        if path.is_dir():
            directories.add(name + "/")
        else:
            files[f"{name}  ({content_kind(path)})"] += 1
    return sorted(directories), sorted(files.elements())


def processes_mentioning(text: str) -> list[int]:
    """Pids whose command line or environment contains `text`."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                if any(text.encode() in (entry / part).read_bytes() for part in ("cmdline", "environ")):
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def test_a_regenerated_example_has_the_structure_of_the_checked_in_one(tmp_path):
    # Not waiting for the hub's next heartbeat saves up to 5 s and changes no name or key.
    fresh = load_regenerate().build(tmp_path / "spool", tmp_path / "live", wait_for=wait_for,
                                    heartbeat_lists_build=False)

    assert structure(fresh) == structure(CHECKED_IN), (
        "the node now writes a different tree: run `python spool-example/regenerate.py`, "
        "then update spool-example/README.md and docs/protocol.md")
    assert processes_mentioning(str(tmp_path / "live")) == [], "a node or script outlived the regeneration"


def test_the_checked_in_example_is_mid_flight():
    _, files = structure(CHECKED_IN)
    names = [f.split("  ")[0] for f in files]
    assert [n for n in names if n.startswith("work/")] == [
        "work/STAMP-build.UTC.HOST.PID.RANDOM.json.1@hub", "work/STAMP-build.UTC.HOST.PID.RANDOM.log"]
    assert [n for n in names if n.startswith("inbox/")] == [
        "inbox/greet.UTC.HOST.PID.RANDOM.json", "inbox/lint.UTC.HOST.PID.RANDOM.json"]
    assert [n for n in names if n.startswith("done/")] == [
        f"done/DAY/HHMMSS.ffffff-greet.UTC.HOST.PID.RANDOM{suffix}" for suffix in (".json", ".log", ".result.json")]
    assert sorted(n.rsplit("-", 1)[-1] for n in names if n.startswith("failed/")) == sorted([
        "deploy.UTC.HOST.PID.RANDOM.json", "deploy.UTC.HOST.PID.RANDOM.result.json",
        "greet.json", "greet.result.json",
        "lint.UTC.HOST.PID.RANDOM.json", "lint.UTC.HOST.PID.RANDOM.log", "lint.UTC.HOST.PID.RANDOM.result.json"])
    assert {"hub.json", "node.lock", "workers/w1/worker.json", "workers/w1/node.lock"} <= set(names)


def test_the_readme_shows_only_names_that_the_checked_in_example_holds():
    tree = [str(path.relative_to(CHECKED_IN)) for path in CHECKED_IN.rglob("*")]
    tree += [path.read_text(errors="replace") for path in CHECKED_IN.rglob("*") if path.is_file()]
    haystack = "\n".join(tree)
    shown = {name.rstrip(".,:;") for name in SPOOL_NAME.findall((EXAMPLE / "README.md").read_text())}
    assert shown, "the README shows real names from the tree"
    assert sorted(name for name in shown if name not in haystack) == [], (
        "the README shows names that spool-example/spool/ does not hold: update it after regenerating")
