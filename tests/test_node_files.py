"""The files a node keeps beside its inbox: heartbeat, lock, tmp/ reaping."""

import json
import os
import time
from pathlib import Path

from conftest import wait_for

from trivialci.spool.layout import hub_dir, worker_dir
from trivialci.spool.delivery import reap_tmp
from trivialci.spool.node import Node, NodeConfig


def test_worker_heartbeat_names_the_worker_and_is_refreshed(spool, pipeline):
    node_dir = worker_dir(spool, "w1")
    config = NodeConfig(pipeline=pipeline, heartbeat=0.05, advertise={"kind": "build", "worker": "w1"})
    with Node(node_dir, config) as node:
        beat = json.loads(node_dir.heartbeat.read_text())
        assert beat["node"] == "w1" and beat["kind"] == "build" and beat["pid"] == os.getpid()
        first = beat["heartbeat"]
        os.utime(node_dir.heartbeat, (0, 0))

        def refreshed():
            node.run_once(timeout=0.05)
            return node_dir.heartbeat.stat().st_mtime > 0

        wait_for(refreshed, message="the heartbeat to be rewritten")
        assert json.loads(node_dir.heartbeat.read_text())["heartbeat"] >= first
        assert node_dir.lock.exists()
    assert not node_dir.heartbeat.exists(), "a clean stop removes the heartbeat"
    assert not node_dir.lock.exists(), "a clean stop releases the lock"


def test_tmp_files_older_than_a_day_are_reaped_and_fresh_ones_kept(spool):
    node_dir = hub_dir(spool)
    node_dir.create()
    stale, fresh = node_dir.tmp / ".stale.tmp", node_dir.tmp / ".fresh.tmp"
    stale.write_text("{")
    fresh.write_text("{")
    day_and_a_bit = time.time() - 86400 - 60
    os.utime(stale, (day_and_a_bit, day_and_a_bit))

    assert reap_tmp(node_dir) == 1
    assert not stale.exists() and fresh.exists()


def test_a_node_reaps_tmp_when_it_starts(spool, pipeline):
    node_dir = hub_dir(spool)
    node_dir.create()
    stale = node_dir.tmp / ".half-delivered.json.tmp"
    stale.write_text('{"x": ')
    os.utime(stale, (1, 1))
    with Node(node_dir, NodeConfig(pipeline=Path(pipeline))) as node:
        node.run_once(timeout=0)
    assert not stale.exists()


def test_status_counts_a_running_event_from_its_claim_not_from_when_it_was_written(spool, pipeline, tmp_path):
    from conftest import write_script

    from trivialci.spool.status import node_status

    gate = tmp_path / "gate"
    write_script(pipeline, "wait", f'#!/bin/sh\nwhile [ ! -e "{gate}" ]; do sleep 0.02; done\n', executable=True)
    node_dir = hub_dir(spool)
    node_dir.create()
    event = node_dir.inbox / "wait.json"
    event.write_text("{}")
    an_hour_ago = time.time() - 3600
    os.utime(event, (an_hour_ago, an_hour_ago))
    with Node(node_dir, NodeConfig(pipeline=pipeline)) as node:
        wait_for(lambda: node.run_once(timeout=0.05) or len(node.children), message="the script to start")
        [running] = node_status(node_dir)["running"]
        assert running["event"] == "wait.json" and 0 <= running["age"] < 60
        gate.touch()
        assert node.drain(timeout=20)
