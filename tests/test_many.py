"""Many events through a real hub running two at a time: none lost, none run twice."""

import json
import signal
from collections import Counter

from conftest import events_in, leftovers, records, wait_for, write_script

from trivialci import emit

COUNT = 1000


def test_a_thousand_events_are_each_handled_exactly_once(spool, pipeline, tmp_path, start_node):
    ran = tmp_path / "ran.txt"
    # One short O_APPEND write per run: lines from two scripts at once never interleave.
    write_script(pipeline, "tick", f'#!/bin/sh\necho "$TRIVIALCI_EVENT_ID" >> "{ran}"\n', executable=True)
    hub = start_node("hub", "--spool", spool, "--pipeline", pipeline, "--jobs", "2", "--grace", "0.5")
    wait_for(lambda: "handling" in hub.stderr(), message="the hub to start")

    for n in range(COUNT):
        emit("tick", {"n": n}, spool=spool)
    wait_for(lambda: len(list((spool / "done").glob("*/*.result.json"))) >= COUNT, timeout=60,
             message=f"{COUNT} records in done/")
    assert hub.stop(signal.SIGTERM, timeout=10) == 0, hub.stderr()

    done = records(spool, "done")
    assert len(done) == COUNT and records(spool, "failed") == []
    assert sorted(r["event"] for r in done) == sorted(set(r["event"] for r in done)), "one record per event"
    runs = Counter(ran.read_text().splitlines())
    assert len(runs) == COUNT and set(runs.values()) == {1}, "every event ran, and only once"
    assert set(runs) == {r["id"] for r in done}
    assert sorted(json.loads(p.read_text())["n"] for p in events_in(spool, "done")) == list(range(COUNT))
    assert leftovers(spool) == []
