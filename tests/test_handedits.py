"""Hand edits of state/ are recorded, so a rebuild keeps them; `trivialci state verify` compares state/ with a rebuild.

The first test is the session of a person at a running hub: PAUSE, three pushes,
`rm` of the middle job's queue entry, PAUSE removed, then `rm -r state/` while the
hub runs. Real hub, real workers it boots, real git, a real directory store.
"""

import json
import os
import shutil
from pathlib import Path

from conftest import run_cli, wait_for
from hubsim import SimulatedHub, beat
from test_flow import BUILD_OK, ci, origin, push_event, store_jobs  # noqa: F401 (fixtures)

import trivialci
from trivialci.hub import HubState

REMOVED = "removed from the queue by hand"


def queue(spool: Path) -> list[Path]:
    return sorted((spool / "state" / "queue" / "build").glob("*.json"))


def job_of(entry: Path) -> str:
    return entry.name.split(".")[1]


def handed_out(spool: Path) -> set[str]:
    """Every job a worker was ever given (start_work in any worker's inbox, work/ or done/)."""
    return {json.loads(path.read_text())["job"] for path in spool.glob("workers/*/*/**/*start_work.*.json")
            if not path.name.endswith(".result.json")}


def recorded(spool: Path, event_type: str) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(spool.glob(f"done/*/*-{event_type}.*.json"))
            if not p.name.endswith(".result.json")]


def remove_state(spool: Path) -> None:
    """`rm -r state/` while the hub runs: moved aside first, as the hub may write into it meanwhile."""
    os.rename(spool / "state", spool / "state.old")
    shutil.rmtree(spool / "state.old")


def test_a_job_removed_from_the_queue_by_hand_never_runs_before_or_after_a_rebuild(ci, origin):  # noqa: F811
    spool = ci["spool"]
    (spool / "state").mkdir(parents=True, exist_ok=True)
    (spool / "state" / "PAUSE").write_text("release freeze\n")
    shas = [origin.commit("main", {"build": BUILD_OK}, message=f"change {n}") for n in range(3)]
    for sha in shas:
        assert push_event(spool, origin, "main", sha).returncode == 0
    entries = wait_for(lambda: len(queue(spool)) == 3 and queue(spool), timeout=60, message="three queued jobs")
    first, removed, last = map(job_of, entries)
    wait_for(lambda: [e["reason"] for e in recorded(spool, "pause")] == ["release freeze"],
             message="the tick to record the PAUSE made by hand")

    entries[1].unlink()
    wait_for(lambda: (HubState(spool).job(removed) or {}).get("status") == "CANCELLED", message="the tick's record")
    wait_for(lambda: any(e.get("job") == removed and e.get("reason") == REMOVED for e in recorded(spool, "work_status")),
             message="the CANCELLED work_status in done/")
    (spool / "state" / "PAUSE").unlink()
    wait_for(lambda: {first, last} <= set(store_jobs(ci["store"])), timeout=90, message="the other two jobs to end")
    assert store_jobs(ci["store"])[removed]["status"] == "CANCELLED"

    remove_state(spool)  # while the hub runs: its next event rebuilds state/
    wait_for(lambda: (spool / "state" / ".built").exists(), timeout=30, message="the rebuild")
    state = HubState(spool)
    assert state.job(removed)["status"] == "CANCELLED" and state.job(removed)["reason"] == REMOVED
    assert not state.paused() and queue(spool) == []
    sha = origin.commit("main", {"build": BUILD_OK}, message="after the rebuild")
    push_event(spool, origin, "main", sha)
    wait_for(lambda: len(store_jobs(ci["store"])) == 4, timeout=90, message="a later push to build")
    assert removed not in handed_out(spool) and {first, last} <= handed_out(spool)
    assert run_cli("state", "verify", "--spool", spool).returncode == 0


def test_a_pause_outlives_a_rebuild_of_state(ci, origin):  # noqa: F811
    spool = ci["spool"]
    (spool / "state").mkdir(parents=True, exist_ok=True)
    (spool / "state" / "PAUSE").touch()
    wait_for(lambda: (spool / "state" / "paused.json").exists(), message="the tick to record the pause")
    remove_state(spool)
    wait_for(lambda: (spool / "state" / ".built").exists(), timeout=30, message="the rebuild")
    assert (spool / "state" / "PAUSE").exists(), "dispatch stays paused"
    sha = origin.commit("main", {"build": BUILD_OK})
    push_event(spool, origin, "main", sha)
    [entry] = wait_for(lambda: queue(spool), timeout=60, message="the job to be queued")
    ticks = len(recorded(spool, "tick"))
    wait_for(lambda: len(recorded(spool, "tick")) > ticks + 5, timeout=30, message="five more ticks")
    assert entry.exists() and handed_out(spool) == set(), "still paused: nothing was handed out"
    (spool / "state" / "PAUSE").unlink()
    wait_for(lambda: store_jobs(ci["store"]), timeout=90, message="the job to run once resumed")


def small_history(spool: Path) -> SimulatedHub:
    """A hub that queued three jobs, built one on w1 and holds two, in-process (tests/hubsim.py)."""
    hub = SimulatedHub(spool, 1_790_000_000.0)
    beat(spool, "w1", 7, alive=True)
    for n in range(3):
        trivialci.emit("branch_update", {"repo": "/srv/app.git", "branch": "main", "old": None, "new": f"{n:040x}",
                                         "kinds": ["build"]}, spool=spool)
    hub.drain()
    trivialci.emit("work_required", {"worker": "w1", "kind": "build"}, spool=spool)
    hub.drain()
    return hub


def listing(spool: Path) -> dict:
    return {str(p.relative_to(spool)): (p.stat().st_mtime_ns, p.read_bytes() if p.is_file() else b"")
            for p in sorted(spool.rglob("*"))}


def test_state_verify_says_a_consistent_state_equals_its_rebuild_and_changes_nothing(spool):
    small_history(spool)
    before = listing(spool)
    shown = run_cli("state", "verify", "--spool", spool)
    assert shown.returncode == 0, shown.stdout + shown.stderr
    assert shown.stdout.startswith("state/ equals its rebuild from the event log (")
    assert listing(spool) == before, "the live spool is only read"


def test_state_verify_of_a_state_removed_by_hand_says_the_hub_rebuilds_it(spool):
    small_history(spool)
    remove_state(spool)
    shown = run_cli("state", "verify", "--spool", spool)
    assert (shown.returncode, shown.stdout) == (0, "state/ is not there, or not complete (no state/.built): the hub "
                                                   "rebuilds it from the event log when it handles its next event; "
                                                   "nothing to compare yet\n"), shown.stdout + shown.stderr
    assert not (spool / "state").exists(), "verify only reads"


def test_state_verify_prints_each_difference_of_a_tampered_state_and_exits_1(spool):
    small_history(spool)
    state = spool / "state"
    [running] = [p for p in (state / "jobs").glob("*.json") if json.loads(p.read_text())["status"] == "STARTING"]
    edited = json.loads(running.read_text())
    running.write_text(json.dumps({**edited, "status": "PASSED"}))
    (state / "workers" / "w1.json").unlink()
    entries = sorted((state / "queue" / "build").glob("*.json"))
    entries[0].unlink()
    (state / "queue" / "build" / "1.20990101T000000Z-abcdef.json").write_text("{}")
    (state / "PAUSE").touch()
    os.symlink("/etc/passwd", state / "jobs" / "20990101T000000Z-aaaaaa.json")
    shown = run_cli("state", "verify", "--spool", spool)
    assert shown.returncode == 1, shown.stdout + shown.stderr
    lines = shown.stdout.splitlines()
    assert f"jobs/{running.name}: status is 'PASSED' in state/, 'STARTING' in the rebuild" in lines
    assert "workers/w1.json: in the rebuild, not in state/" in lines
    assert f"{entries[0].relative_to(state)}: in the rebuild, not in state/ (its removal from the queue was made " \
           "by hand and not yet recorded: the hub records it at its next tick (trivialci hub --tick))" in lines
    assert "queue/build/1.20990101T000000Z-abcdef.json: in state/, not in the rebuild" in lines
    assert any(line.startswith("PAUSE: in state/, not in the rebuild (PAUSE made by hand") for line in lines)
    assert "jobs/20990101T000000Z-aaaaaa.json: in state/, not in the rebuild" in lines, "a link is not followed"
    assert lines[-1] == "state/ differs from its rebuild from the event log in 6 places"


def test_a_job_handed_out_after_pause_was_removed_by_hand_follows_the_resume_in_the_log(spool):
    """The dispatch that hands out a job records a PAUSE removed by hand first: a rebuild at once keeps the resume."""
    hub = SimulatedHub(spool, 1_790_000_000.0)
    beat(spool, "w1", 7, alive=True)
    (spool / "state").mkdir(parents=True, exist_ok=True)
    (spool / "state" / "PAUSE").write_text("freeze\n")
    trivialci.emit("tick", {"at": 1_790_000_000}, spool=spool)
    trivialci.emit("branch_update", {"repo": "/srv/app.git", "branch": "main", "old": None, "new": "a" * 40,
                                     "kinds": ["build"]}, spool=spool)
    trivialci.emit("work_required", {"worker": "w1", "kind": "build"}, spool=spool)
    hub.drain()
    assert [e["reason"] for e in recorded(spool, "pause")] == ["freeze"] and not handed_out(spool)

    (spool / "state" / "PAUSE").unlink()  # and no tick comes before the next dispatch
    trivialci.emit("work_required", {"worker": "w1", "kind": "build"}, spool=spool)
    hub.drain()
    assert len(handed_out(spool)) == 1
    assert [e["by"] for e in recorded(spool, "resume")] == ["hand"]

    remove_state(spool)
    state = HubState.open(spool)
    assert not state.paused(), "the rebuilt hub is not paused again"
    assert [job["status"] for job in state.recent_jobs(10)] == ["STARTING"]
