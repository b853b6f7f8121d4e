"""Retention of what lies outside done/ and failed/: answered build requests in state/requests/, the boot logs
SPOOL/workers/NAME.log, and the directories of workers gone for good (aged with os.utime, never by sleeping)."""

import json
import os
import shutil
from pathlib import Path

import pytest
from conftest import run_cli
from test_prune import DAY, NOW, handled, iso

from trivialci.hub import HubState, RetentionPolicy, eventlog, prune
from trivialci.hub.verify import fold_files
from trivialci.jobs import new_job_id
from trivialci.spool.layout import hub_dir, worker_dir

POLICY = RetentionPolicy(keep_days=30, keep_last=2, keep_failed_days=90, worker_log_bytes=1 << 20)


def age(path: Path, days: float) -> Path:
    os.utime(path, (NOW - days * DAY, NOW - days * DAY), follow_symlinks=False)
    return path


def tree(root: Path) -> dict:
    found = {}
    for parent, directories, names in os.walk(root):
        for name in names + [d for d in directories if os.path.islink(os.path.join(parent, d))]:
            path = Path(parent, name)
            found[str(path.relative_to(root))] = os.readlink(path) if path.is_symlink() else path.read_bytes()
    return found


@pytest.fixture
def hub_spool(spool):
    hub_dir(spool).create()
    return spool


# --- state/requests/ ---------------------------------------------------------------------------------

def job_in_state(state: HubState, status: str) -> str:
    """A job of 3 days ago, its changes recorded in the hub's done/ and folded into state/ as the hub does."""
    job = new_job_id(NOW - 3 * DAY)
    changes = [{"job": job, "status": "QUEUED", "repo": "/r", "branch": "main", "sha": "a" * 40, "kind": "build",
                "attempt": 1, "queued": iso(3)}]
    if status != "QUEUED":
        changes.append({"job": job, "status": status, "attempt": 1, "worker": "w1", "ended": iso(3)})
    for change in changes:
        record = handled(state.node_dir.root, 3, "work_status", change)
        state.apply("work_status", change, at=eventlog.iso_of_stamp(f"{record.parent.name}T{record.name[:13]}"))
    return job


def request(state: HubState, name: str, jobs: list[str], days: float) -> Path:
    state.write_request(name, jobs, "queued")
    return age(state.root / "requests" / f"{name}.json", days)


def test_requests_answered_more_than_a_day_ago_go_and_waited_ones_stay(hub_spool):
    state = HubState.open(hub_spool)
    passed, queued = job_in_state(state, "PASSED"), job_in_state(state, "QUEUED")
    gone = [request(state, "answered", [passed], 2), request(state, "nothing", [], 2),
            request(state, "forgotten", [new_job_id(NOW - 50 * DAY)], 2), request(state, "ancient", [queued], 31)]
    kept = [request(state, "fresh", [passed], 0.5), request(state, "waiting", [queued], 2)]
    plan = prune(hub_spool, None, POLICY, dry_run=True)
    assert {p.name for p in gone} <= {line.split("state/requests/")[-1].split()[0]
                                      for line in plan.lines(done=False) if "state/requests/" in line}
    prune(hub_spool, None, POLICY)
    assert [p.exists() for p in gone] == [False] * 4 and all(p.exists() for p in kept)
    assert state.request("waiting") == {"request": "waiting", "jobs": [queued], "note": "queued"}


def test_a_link_in_state_requests_is_removed_and_never_followed(hub_spool, tmp_path):
    state = HubState.open(hub_spool)
    victim = tmp_path / "victim.json"
    victim.write_text("{}")
    (state.root / "requests").mkdir(exist_ok=True)
    link = state.root / "requests" / "abc.json"
    link.symlink_to(victim)
    age(link, 40)
    prune(hub_spool, None, POLICY)
    assert victim.read_text() == "{}"


# --- SPOOL/workers/NAME.log --------------------------------------------------------------------------

def boot_log(spool: Path, name: str, days: float, size: int = 100) -> Path:
    path = spool / "workers" / f"{name}.log"
    path.write_bytes(b"x" * (size - 1) + b"\n")
    return age(path, days)


def heartbeat(spool: Path, name: str, days: float) -> Path:
    node = worker_dir(spool, name)
    node.create()
    node.heartbeat.write_text(json.dumps({"kind": "build", "pid": 1}))
    for path in (node.heartbeat, node.root):
        age(path, days)
    return node.root


def test_the_boot_logs_of_workers_gone_for_keep_days_go(hub_spool):
    gone = [boot_log(hub_spool, "never-came", 31), boot_log(hub_spool, "left", 40)]
    (hub_spool / "workers" / "left.log.1").write_text("the part cut before\n")
    gone.append(age(hub_spool / "workers" / "left.log.1", 40))
    heartbeat(hub_spool, "left", 35)
    kept = [boot_log(hub_spool, "recent", 29), boot_log(hub_spool, "quiet-but-alive", 60)]
    heartbeat(hub_spool, "quiet-but-alive", 0)
    prune(hub_spool, None, POLICY)
    assert [p.exists() for p in gone] == [False] * 3 and all(p.exists() for p in kept)


def test_a_big_boot_log_is_cut_and_its_worker_writes_on(hub_spool):
    heartbeat(hub_spool, "busy", 0)
    log = hub_spool / "workers" / "busy.log"
    with open(log, "ab") as worker_output:  # as hub/boot.py opens it for the worker's stdout and stderr
        for n in range(40_000):
            worker_output.write(f"line {n:06d} of the worker's own output\n".encode())
        worker_output.flush()
        written = log.stat().st_size
        plan = prune(hub_spool, None, POLICY)
        worker_output.write(b"after the cut\n")
        worker_output.flush()
    assert any(f"cut workers/busy.log ({written} bytes)" in line for line in plan.lines(done=True))
    assert log.read_bytes() == b"after the cut\n"
    kept = log.with_name("busy.log.1").read_bytes()
    assert len(kept) <= POLICY.worker_log_bytes and kept.endswith(b"line 039999 of the worker's own output\n")
    assert kept.startswith(b"line ") and kept.count(b"\n") == len(kept.splitlines())


def test_a_link_at_a_boot_log_is_not_followed(hub_spool, tmp_path):
    victim = tmp_path / "victim"
    victim.write_bytes(b"v" * (2 << 20))
    (hub_spool / "workers" / "evil.log").symlink_to(victim)
    age(hub_spool / "workers" / "evil.log", 40)
    prune(hub_spool, None, POLICY)
    assert victim.stat().st_size == 2 << 20


# --- SPOOL/workers/NAME/ -----------------------------------------------------------------------------

def gone_worker(spool: Path, name: str, days: float = 100) -> Path:
    """A worker directory whose worker stopped `days` ago: heartbeat, lock, records, all that old."""
    root = heartbeat(spool, name, days)
    handled(root, days, "start_work", {})
    (root / "node.lock").write_text("{}")
    age(root / "node.lock", days)
    age(root, days)
    return root


def test_a_worker_directory_gone_for_good_goes_whole(hub_spool):
    gone = gone_worker(hub_spool, "old")
    kept = {"alive": heartbeat(hub_spool, "alive", 0)}
    for where in ("inbox", "work", "sending"):
        kept[where] = gone_worker(hub_spool, f"old-{where}")
        (kept[where] / where).mkdir(exist_ok=True)
        (kept[where] / where / "start_work.x.json").write_text("{}")  # not yet handled or delivered, however old
        age(kept[where] / where / "start_work.x.json", 100)
        age(kept[where], 100)
    kept["tmp"] = gone_worker(hub_spool, "old-tmp")
    (kept["tmp"] / "tmp" / ".staged").write_text("{")  # young: a delivery under way
    age(kept["tmp"], 100)
    kept["failed"] = gone_worker(hub_spool, "old-failed")
    handled(kept["failed"], 60, "start_work", {}, where="failed")  # failed/ is kept 90 days
    age(kept["failed"], 100)
    result = run_cli("prune", "--spool", hub_spool, "--keep-days", "30", "--keep-last", "2")
    assert result.returncode == 0, result.stderr
    assert not gone.exists() and "removed workers/old/" in result.stdout
    assert all(path.is_dir() for path in kept.values()), result.stdout
    assert sorted(os.listdir(hub_spool / "workers")) == ["alive", "old-failed", "old-inbox", "old-sending", "old-tmp",
                                                          "old-work"]


def test_a_worker_directory_half_removed_is_finished_by_the_next_prune(hub_spool):
    half = hub_spool / "workers" / ".gone.old.0123abcd"
    (half / "done" / "2020-01-01").mkdir(parents=True)
    (half / "done" / "2020-01-01" / "x.json").write_text("{}")
    prune(hub_spool, None, POLICY)
    assert not half.exists()


def test_a_link_at_a_worker_directory_is_not_followed(hub_spool, tmp_path):
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "keep").write_text("keep me")
    for name in ("evil", ".gone.evil.0123abcd"):
        (hub_spool / "workers" / name).symlink_to(victim, target_is_directory=True)
        age(hub_spool / "workers" / name, 100)
    prune(hub_spool, None, POLICY)
    assert (victim / "keep").read_text() == "keep me"


def test_the_rebuilt_state_is_unchanged_by_what_goes(hub_spool):
    state = HubState.open(hub_spool)
    request(state, "answered", [job_in_state(state, "PASSED")], 2)
    gone_worker(hub_spool, "old")
    boot_log(hub_spool, "old", 100)
    before = fold_files(state.root)
    prune(hub_spool, None, POLICY)
    assert not (hub_spool / "workers" / "old").exists()
    assert fold_files(state.root) == before
    shutil.rmtree(state.root)
    assert fold_files(HubState.open(hub_spool).root) == before
    assert run_cli("state", "verify", "--spool", hub_spool).returncode == 0


def test_a_dry_run_lists_them_with_bytes_and_changes_nothing(hub_spool):
    state = HubState.open(hub_spool)
    request(state, "answered", [job_in_state(state, "PASSED")], 2)
    gone_worker(hub_spool, "old")
    boot_log(hub_spool, "old", 100, size=1234)
    before = tree(hub_spool)
    result = run_cli("prune", "--spool", hub_spool, "--keep-days", "30", "--dry-run")
    assert result.returncode == 0, result.stderr
    assert tree(hub_spool) == before
    lines = result.stdout.splitlines()
    assert "would remove hub: state/requests/answered.json (1 files, " in result.stdout
    assert "would remove workers/old.log (1 files, 1234 bytes)" in result.stdout
    assert any(line.startswith("would remove workers/old/ (") for line in lines)
    assert "3 other entries" in lines[-1]


def test_the_cli_cuts_boot_logs_at_worker_log_mib(hub_spool):
    heartbeat(hub_spool, "busy", 0)
    log = boot_log(hub_spool, "busy", 0, size=(2 << 20) + 10)
    dry = run_cli("prune", "--spool", hub_spool, "--worker-log-mib", "1", "--dry-run")
    assert f"would cut workers/busy.log ({(2 << 20) + 10} bytes): at most its last {1 << 20} bytes" in dry.stdout
    assert log.stat().st_size == (2 << 20) + 10
    assert "workers/busy.log" not in run_cli("prune", "--spool", hub_spool, "--dry-run").stdout, "10 MiB by default"
    assert run_cli("prune", "--spool", hub_spool, "--worker-log-mib", "1").returncode == 0
    assert log.stat().st_size == 0 and log.with_name("busy.log.1").stat().st_size < 1 << 20
