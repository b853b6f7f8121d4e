"""The quick start, as a user runs it: emit, drain, read the record."""

import json

from conftest import events_in, records, run_cli


def test_emit_then_drain_records_the_event_in_done(spool):
    delivered = run_cli("emit", "hello", '{"name": "tester"}', "--spool", spool)
    assert delivered.returncode == 0, delivered.stderr
    assert delivered.stdout.strip().startswith(str(spool / "inbox" / "hello."))

    drained = run_cli("hub", "--spool", spool, "--drain")
    assert drained.returncode == 0, drained.stderr
    assert "hello" in drained.stderr and "done" in drained.stderr

    [result] = records(spool)
    assert result["status"] == "done" and result["exit_code"] == 0 and result["attempt"] == 1
    [event] = events_in(spool, "done")
    assert json.loads(event.read_text()) == {"name": "tester"}
    log = event.with_name(event.name[: -len(".json")] + ".log").read_text()
    assert "hello, tester!" in log
    assert list((spool / "inbox").iterdir()) == [] and list((spool / "work").iterdir()) == []
