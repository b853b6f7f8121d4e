"""--pipeline git+URL#BRANCH: the hub runs the scripts of a branch, and a push to it changes them."""

import json
import shutil

from conftest import ROOT, records, run_cli, wait_for
from test_flow import Origin

HELLO = 'print("hello from pipeline {version}")\n'


def publish(origin: Origin, version: str) -> str:
    pipeline = origin.work / "pipeline"
    if not pipeline.exists():
        shutil.copytree(ROOT / "pipeline", pipeline, ignore=shutil.ignore_patterns("__pycache__"))
    (pipeline / "hello.py").write_text(HELLO.format(version=version))
    return origin.commit("ci", {}, message=f"pipeline {version}")


def logs_of(spool, event_type: str) -> list[str]:
    return [p.read_text() for p in sorted((spool / "done").glob(f"*/*-{event_type}.*.log"))]


def test_the_hub_runs_the_scripts_of_a_branch_and_follows_its_pushes(tmp_path, start_node):
    origin = Origin(tmp_path)
    first = publish(origin, "v1")
    spool = tmp_path / "spool"
    hub = start_node("hub", "--spool", spool, "--pipeline", f"git+{origin.bare}#ci", "--workdir", tmp_path / "ciwork")
    wait_for(lambda: "handling" in hub.stderr(), message="the hub to start")
    run_cli("emit", "hello", "{}", "--spool", spool)
    wait_for(lambda: logs_of(spool, "hello"), message="hello to be handled")
    assert logs_of(spool, "hello") == ["hello from pipeline v1\n"]

    second = publish(origin, "v2")
    assert second != first
    push = {"repo": str(origin.bare), "branch": "ci", "old": first, "new": second}
    run_cli("emit", "branch_update", json.dumps(push), "--spool", spool)
    wait_for(lambda: logs_of(spool, "branch_update"), message="the push to be handled")
    assert "now runs the scripts of ci" in logs_of(spool, "branch_update")[0]
    run_cli("emit", "hello", "{}", "--spool", spool)
    wait_for(lambda: len(logs_of(spool, "hello")) == 2, message="the second hello")
    assert logs_of(spool, "hello")[1] == "hello from pipeline v2\n"
    assert [r["status"] for r in records(spool)].count("done") == 3
    assert hub.stop() == 0


def test_a_bad_pipeline_source_is_refused_in_one_line(tmp_path):
    refused = run_cli("hub", "--spool", tmp_path / "spool", "--pipeline", "git+/nowhere", "--drain")
    assert refused.returncode == 2 and "git+URL#BRANCH" in refused.stderr and "Traceback" not in refused.stderr
