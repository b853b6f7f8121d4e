"""Hostile text cannot drive the terminal: what the commands and the logs show is escaped.

A branch name, a state file, a store record, a heartbeat and an event file
name come from whoever can push or write the spool. git accepts bidi overrides
and C1 controls in branch names (U+202E, U+2066, U+009B) and refuses ESC; a
server can still list a ref named with ESC, and an attacker who can write the
spool writes the rest by hand.
"""

import json

from conftest import run_cli
from gitrepo import Origin, git

from trivialci.spool.terminal import printable
from trivialci.store import open_store

BIDI = "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f\u061c"
EVIL_BRANCH = "feat/\u202eevil\u2066-\u009b2J"  # git accepts it: a push can name a branch so
ESC_BRANCH = "esc\x1b[2J\x1b]0;owned\x07x"  # git refuses it: only a server (or a hand) makes such a ref
RAW = ["\x1b", "\x07", "\x9b", "\r", *BIDI]
BUILD = "#!/bin/sh\necho built\n"


def raw_characters(text: str) -> list[str]:
    """The characters in `text` that drive a terminal or reorder what it shows."""
    return sorted({c for c in text if c in RAW or (not c.isprintable() and c != "\n")})


def test_printable_escapes_controls_escapes_separators_and_bidi_and_nothing_else():
    assert printable("a\x1b[2Jb") == "a\\x1b[2Jb"
    assert printable("\x9b31m\x85\x7f") == "\\x9b31m\\x85\\x7f"
    assert printable("line\nforged\r\t") == "line\\nforged\\r\\t"
    assert printable(BIDI) == "".join(f"\\u{ord(c):04x}" for c in BIDI)
    assert printable("\u2028\xa0\udcff\U000e0041") == "\\u2028\\xa0\\udcff\\U000e0041"
    assert printable("main, feature/日本語 é ✓") == "main, feature/日本語 é ✓"
    assert printable(None) == "None" and printable(12) == "12"
    for text in ("a\x1b[2Jb", BIDI, "x\\x1by", "\udcff\n"):
        assert printable(printable(text)) == printable(text), "escaping twice changes nothing"


def test_a_hostile_branch_reaches_the_gitwatcher_log_the_hub_log_and_jobs_escaped(tmp_path):
    origin, spool = Origin(tmp_path), tmp_path / "spool"
    sha = origin.commit({".trivialci/build": BUILD})
    (origin.work / ".trivialci" / "build").chmod(0o755)
    sha = origin.commit({}, message="executable")
    git("push", "-q", "origin", f"main:refs/heads/{EVIL_BRANCH}", cwd=origin.work)
    (origin.bare / "refs" / "heads" / ESC_BRANCH).write_text(sha + "\n")

    watched = run_cli("gitwatcher", "--spool", spool, "--repo", origin.bare, "--once")
    assert watched.returncode == 0, watched.stderr
    assert raw_characters(watched.stderr) == []
    assert f"branch_update {printable(EVIL_BRANCH)} (new)" in watched.stderr
    assert "\\x1b[2J\\x1b]0;owned\\x07x" in watched.stderr, "the refused name is shown, escaped"

    hub = run_cli("hub", "--spool", spool, "--workdir", tmp_path / "hubwork", "--drain",
                  env={"TRIVIALCI_BOOT_HOSTS": "*=none"})
    assert hub.returncode == 0 and raw_characters(hub.stderr) == [], hub.stderr
    jobs = run_cli("jobs", "--spool", spool)
    assert jobs.returncode == 0, jobs.stderr
    assert raw_characters(jobs.stdout) == [] and printable(EVIL_BRANCH) in jobs.stdout
    as_json = run_cli("jobs", "--spool", spool, "--json")
    queued = json.loads(as_json.stdout)["queued"]["build"]
    assert raw_characters(as_json.stdout) == [] and EVIL_BRANCH in [job["branch"] for job in queued]


def write_json(path, record) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, ensure_ascii=False))


def test_status_and_jobs_escape_what_an_attacker_wrote_in_heartbeats_and_state(tmp_path):
    spool = tmp_path / "spool"
    for name in ("inbox", "tmp", "work", "done", "failed", "state"):
        (spool / name).mkdir(parents=True)
    write_json(spool / "hub.json", {"node": "hub", "host": "\x1b]0;owned\x07", "pid": "\u202e4242",
                                    "polling": "\x1b[2J", "blocked": "line\n2026-01-01 forged: all is well"})
    write_json(spool / "workers" / "w1" / "worker.json", {"node": "w1", "host": "h\x9b2J", "pid": 7,
                                                          "outbox": "\u2066many\u2069"})
    (spool / "workers" / "w1" / "work").mkdir()
    (spool / "workers" / "w1" / "work" / "2026-01-01T000000.000000-x\x1b[2J.json.1@w1").write_text("{}")
    job = {"job": "20260101T000000Z-aaaaaa", "repo": "/r\x1b[31m", "branch": ESC_BRANCH, "sha": "\u202e" * 12,
           "kind": "build\x1b[8m", "status": "PASSED", "attempt": "1\n2", "run_time": 1.5}
    write_json(spool / "state" / "jobs" / f"{job['job']}.json", job)
    running = {**job, "job": "20260101T000001Z-bbbbbb", "status": "BUILDING", "worker": "w1\u202e"}
    write_json(spool / "state" / "jobs" / f"{running['job']}.json", running)
    write_json(spool / "state" / "queue" / "build" / f"1.{job['job']}.json", job)
    write_json(spool / "state" / "workers" / "w1.json", {"name": "w1\x1b[2J", "kind": "\u202ebuild", "state": "busy",
                                                         "job": running["job"]})

    status = run_cli("status", "--spool", spool)
    assert status.returncode == 0, status.stderr
    assert raw_characters(status.stdout) == [] and "forged" in status.stdout
    assert not any(line.startswith("2026-01-01") for line in status.stdout.splitlines()), "no forged line"
    assert "\\x1b]0;owned\\x07" in status.stdout and "\\u2066many\\u2069" in status.stdout

    jobs = run_cli("jobs", "--spool", spool)
    assert jobs.returncode == 0, jobs.stderr
    assert raw_characters(jobs.stdout) == [] and "build\\x1b[8m" in jobs.stdout and "w1\\u202e" in jobs.stdout
    assert len(jobs.stdout.splitlines()) == 8, jobs.stdout  # 4 headings, queued, running, recent, one worker


def test_history_escapes_bidi_and_c1_in_store_records(tmp_path):
    store = open_store(tmp_path / "store")
    record = {"job": "20260101T000000Z-aaaaaa", "status": "PASSED", "branch": EVIL_BRANCH, "sha": "a" * 40,
              "kind": "build", "worker": "\u2066w\u2069", "reason": "ok\x9b2J", "files": ["\u202eexe.txt"]}
    store.put_bytes(f"jobs/{record['job']}/job.json", json.dumps(record).encode())
    listed = run_cli("history", "list", "--store", store.url)
    shown = run_cli("history", "show", record["job"], "--store", store.url)
    for result in (listed, shown):
        assert result.returncode == 0 and raw_characters(result.stdout) == [], result.stdout
    assert printable(EVIL_BRANCH) in listed.stdout and "\\u202eexe.txt" in shown.stdout


def test_a_hostile_event_file_name_is_escaped_in_the_node_log(tmp_path, pipeline):
    spool = tmp_path / "spool"
    (spool / "inbox").mkdir(parents=True)
    (spool / "inbox" / "x\x1b[2J\u202e\n2026-01-01 hub: forged.json").write_text("{}")
    drained = run_cli("hub", "--spool", spool, "--pipeline", pipeline, "--drain")
    assert drained.returncode == 0, drained.stderr
    assert raw_characters(drained.stderr) == []
    assert "x\\x1b[2J\\u202e\\n2026-01-01 hub: forged.json" in drained.stderr
    assert not any(line.startswith("2026-01-01 hub") for line in drained.stderr.splitlines())


def test_an_error_line_stays_one_line_without_escapes(tmp_path):
    result = run_cli("jobs", "--spool", f"{tmp_path}/\x1b[2J\nError: forged")
    assert result.returncode == 2 and raw_characters(result.stderr) == []
    assert len(result.stderr.splitlines()) == 1, result.stderr
