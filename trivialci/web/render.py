"""The web UI's one renderer: Jinja2 templates (templates/*.html) drawn on the server, every value escaped.

Each view is one template; its `main` block is the part of the page that
changes, and the page's script asks for that block alone (the request header
`X-Part: main`) every REFRESH_MS and puts it in place when it differs. The
browser never draws a value itself, so a page is changed in one place.
Autoescaping is on for every template: a value is text, whatever it holds.
The filters below turn record values (which are input like any other) into
what a person reads; a value of the wrong type is shown as it is, escaped.
"""

import functools
import json
import time
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import quote

from ..jobs import JobStatus, is_job_id
from . import chart

REFRESH_MS = 2000
STATUSES = {status.value for status in JobStatus}
NAV = (("jobs", "/"), ("branches", "/branches"), ("queue", "/queue"), ("workers", "/workers"), ("events", "/events"))


@functools.cache
def environment():
    """The templates' Jinja2 environment, made (and jinja2 imported) when the first page is drawn: every CLI
    command imports the web UI's module through `trivialci hub`'s, and importing jinja2 costs most of them
    a tenth of a second for nothing."""
    import jinja2
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"), autoescape=True,
                             undefined=jinja2.ChainableUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters.update(when=when, ago=ago, seconds=seconds, size=size, short=short, status_class=status_class,
                       job_href=job_href, branch_href=branch_href, plain=plain, urlquote=lambda v: quote(str(v)))
    env.globals.update(chart=chart.svg)
    return env


def render(name: str, values: dict, part: bool = False) -> str:
    """The template `name` drawn with `values`: the whole page, or only its `main` block."""
    template = environment().get_template(name)
    values = {**values, "nav": NAV, "refresh_ms": REFRESH_MS, "now": time.time()}
    if not part:
        return template.render(values)
    return "".join(template.blocks["main"](template.new_context(values)))


def _epoch(stamp) -> float | None:
    if not isinstance(stamp, str) or len(stamp) < 19 or stamp[10] != "T":
        return None
    try:
        return datetime.strptime(stamp[:19], "%Y-%m-%dT%H:%M:%S").replace(tzinfo=timezone.utc).timestamp()
    except ValueError:
        return None


def when(stamp) -> str:
    """An ISO UTC time as `YYYY-MM-DD HH:MM:SS UTC`; anything else as it is."""
    return f"{stamp[:10]} {stamp[11:19]} UTC" if _epoch(stamp) is not None else ("" if stamp is None else str(stamp))


def ago(stamp, now: float | None = None) -> str:
    """How long ago, for a person: `12s ago`, `3 min ago`, `5 h ago`, `2 days ago`."""
    at = _epoch(stamp)
    if at is None:
        return "" if stamp is None else str(stamp)
    past = max(0, (time.time() if now is None else now) - at)
    for limit, unit, name in ((60, 1, "s"), (3600, 60, " min"), (86400, 3600, " h")):
        if past < limit:
            return f"{past / unit:.0f}{name} ago"
    return f"{past / 86400:.0f} days ago"


def seconds(value) -> str:
    """A duration: `0.3s`, `42s`, `3m 05s`, `1h 02m`."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return "" if value is None else str(value)
    if value < 10:
        return f"{value:.1f}s"
    if value < 60:
        return f"{value:.0f}s"
    if value < 3600:
        return f"{int(value // 60)}m {int(value % 60):02d}s"
    return f"{int(value // 3600)}h {int(value % 3600 // 60):02d}m"


def size(value) -> str:
    if isinstance(value, bool) or not isinstance(value, int):
        return ""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return ""


def short(sha) -> str:
    return sha[:7] if isinstance(sha, str) else ("" if sha is None else str(sha))


def status_class(status) -> str:
    """A CSS class for a status: only the known words name one."""
    return f"s-{status}" if status in STATUSES else "s-unknown"


def job_href(job_id) -> str | None:
    return f"/jobs/{job_id}" if isinstance(job_id, str) and is_job_id(job_id) else None


def branch_href(branch, repo=None) -> str:
    query = f"/branch?name={quote(str(branch), safe='')}"
    return query + (f"&repo={quote(str(repo), safe='')}" if repo else "")


def plain(value) -> str:
    """A record value as one line of text: JSON for lists and objects."""
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float, list, dict)):
        return json.dumps(value)
    return ""  # None, or a field the record does not have (jinja2's Undefined)
