"""The web: the hub's read-only UI, the worker's live log server, the hub's webhook endpoint.

The UI (ui.py: the HTTP server; data.py and pushes.py: what it reads;
logpage.py and ansi.py: a job's log as pages of coloured lines; render.py and
templates/: the pages, Jinja2; chart.py: run-time charts; pages.py: the
badge) shows the hub's state, its done/ and failed/,
and the artifact store. The log server (logserver.py) streams a worker's live
build logs. Both only read, bind 127.0.0.1 unless told otherwise, and escape
every value they show. The webhook endpoint (webhook.py) is HTTP around
forge/receive.py: it writes nothing but events into the hub's inbox.

It may import every layer below it (hub, worker, store, spool); only the CLI
imports it.
"""
