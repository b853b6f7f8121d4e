"""The spool protocol: events as files, and the node loop that handles them.

This layer is what docs/protocol.md describes: the spool tree (layout), event
names and bodies (event), atomic writes (atomic), delivery by tmp/ + rename
(delivery, and a worker's outbox), claiming by rename (claim), running a
pipeline script (runner), recording into done/ or failed/ (record), taking
work/ back after a crash (recovery), one process per node directory (lock),
the inbox and how it is watched (inbox, watcher, mounts), heartbeats, the
processes a node started (processes), the node's loop (node, children),
values made safe to show on a terminal (terminal), and who may read what the
CI writes: its user, or a group that shares the spool (permissions).

It guarantees what the protocol promises: every event that enters an inbox
ends in done/ or failed/ with a reason, across kills, bad input and full disks.

It imports the standard library and itself only (watchdog in watcher.py
alone, loaded when a node starts watching), plus trivialci.errors. Everything
else in TrivialCi is built on it; it knows nothing of jobs, git or stores.
"""
