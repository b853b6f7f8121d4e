"""What a spool holds right now: per node, its counts, running events and heartbeat.

Counting done/ and failed/ reads only today's folders (UTC): history is never
rescanned to answer a quick question.
"""

import calendar
import os
import time

from .claim import parse_claimed
from .heartbeat import read_heartbeat
from .layout import NodeDir, hub_dir, worker_dir, worker_names
from .terminal import printable


def spool_status(spool) -> dict:
    nodes = [hub_dir(spool)] + [worker_dir(spool, name) for name in worker_names(spool)]
    return {"spool": str(hub_dir(spool).root), "nodes": [node_status(node) for node in nodes]}


def node_status(node_dir: NodeDir) -> dict:
    today = time.strftime("%Y-%m-%d", time.gmtime())
    return {
        "node": node_dir.node,
        "inbox": _count(node_dir.inbox, lambda n: n.endswith(".json") and not n.startswith(".")),
        "running": _running(node_dir),
        "done_today": _count(node_dir.done / today, _is_record_event),
        "failed_today": _count(node_dir.failed / today, _is_record_event),
        "heartbeat": read_heartbeat(node_dir),
    }


def format_status(status: dict) -> str:
    """The status as a table; every value that came from the spool is shown through `printable`."""
    lines = [f"spool {printable(status['spool'])}", ""]
    lines.append(f"{'NODE':<16} {'STATE':<28} {'INBOX':>6} {'RUNNING':>8} {'DONE':>6} {'FAILED':>7}  (today, UTC)")
    for node in status["nodes"]:
        lines.append(f"{printable(node['node']):<16} {printable(_state(node['heartbeat'])):<28} {node['inbox']:>6} "
                     f"{len(node['running']):>8} {node['done_today']:>6} {node['failed_today']:>7}")
    running = [(printable(node["node"]), item) for node in status["nodes"] for item in node["running"]]
    if running:
        lines += ["", "running:"]
        lines += [f"  {name:<16} {printable(item['id'])}  attempt {item['attempt']}  for {item['age']:.0f}s"
                  for name, item in running]
    notes = [(printable(node["node"]), note) for node in status["nodes"] for note in _notes(node["heartbeat"])]
    if notes:
        lines += ["", "notes:"]
        lines += [f"  {name:<16} {printable(note)}" for name, note in notes]
    return "\n".join(lines)


def _notes(beat: dict | None) -> list[str]:
    """What a person looking at a node should know: it polls, it is blocked, reports wait in its outbox."""
    if not beat:
        return []
    notes = [f"polling: {beat['polling']}"] if beat.get("polling") else []
    if beat.get("blocked"):
        notes.append(f"blocked: {beat['blocked']}")
    if beat.get("outbox"):
        notes.append(f"{beat['outbox']} event(s) for the hub wait in its outbox")
    return notes


def _state(beat: dict | None) -> str:
    if not beat:
        return "not running"
    where = f"pid {beat.get('pid')} on {beat.get('host')}"
    return f"{where}, {beat['age']:.0f}s ago" if beat["age"] > 15 else f"up, {where}"


def _running(node_dir: NodeDir) -> list[dict]:
    running = []
    for entry in _scan(node_dir.work):
        claim = parse_claimed(node_dir, entry.name)
        if claim:
            age = time.time() - calendar.timegm(time.strptime(claim.stamp[:17], "%Y-%m-%dT%H%M%S"))
            running.append({"id": claim.id, "event": claim.name, "attempt": claim.attempt, "age": age})
    return running


def _is_record_event(name: str) -> bool:
    return name.endswith(".json") and not name.endswith(".result.json")


def _count(directory, wanted) -> int:
    return sum(1 for entry in _scan(directory) if wanted(entry.name))


def _scan(directory):
    try:
        return list(os.scandir(directory))
    except (FileNotFoundError, NotADirectoryError):
        return []
