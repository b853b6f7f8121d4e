"""The loop survives errors: an exception inside one iteration is logged, the next goes on."""

import logging

from conftest import records, wait_for, write_script

import trivialci
from trivialci.spool.layout import hub_dir
from trivialci.spool.node import Node, NodeConfig


def test_an_exception_inside_an_iteration_is_logged_and_the_loop_goes_on(spool, pipeline, caplog):
    write_script(pipeline, "ok", "#!/bin/sh\nexit 0\n", executable=True)
    node_dir = hub_dir(spool)
    with Node(node_dir, NodeConfig(pipeline=pipeline, rescan=0.05)) as node:
        real_rescan = node.tracker.rescan
        failures = []

        def rescan_that_fails_once():
            if not failures:
                failures.append(1)
                raise RuntimeError("injected fault")
            real_rescan()

        node.tracker.rescan = rescan_that_fails_once
        trivialci.emit("ok", {}, spool=spool)
        with caplog.at_level(logging.ERROR, logger="trivialci"):
            wait_for(lambda: node.run_once(timeout=0.05) or records(spool), message="the event to be handled")
    assert failures and "injected fault" in caplog.text and "carrying on" in caplog.text
    assert [r["status"] for r in records(spool)] == ["done"]


def test_drain_handles_what_is_waiting_and_returns(spool, pipeline):
    write_script(pipeline, "ok", "#!/bin/sh\necho ran\n", executable=True)
    for number in range(5):
        trivialci.emit("ok", {"n": number}, spool=spool)
    with Node(hub_dir(spool), NodeConfig(pipeline=pipeline, jobs=2)) as node:
        assert node.drain(timeout=30)
        assert not node.busy()
    assert len(records(spool)) == 5
