"""A small bar chart of run times, drawn on the server as SVG: one bar per job, the current one marked.

Bars are in the order the jobs were queued (oldest left), their height the run
time against the longest one shown, their class the job's status (the page's
style colours them: no style attribute, which the CSP would refuse), each a
link to its job with a tooltip. Every value in it is escaped.
"""

from html import escape

from markupsafe import Markup

from ..jobs import is_job_id

HEIGHT, BAR, GAP, MIN_WIDTH = 56, 8, 2, 120
STATUSES = {"PASSED", "FAILED", "LOST", "UNSTORED", "CANCELLED", "SUPERSEDED", "SKIPPED"}


def svg(jobs: list[dict], current: str | None = None, label: str = "run times") -> Markup:
    """The chart of `jobs` (each with job, run_time, status, sha), oldest first."""
    times = [j["run_time"] for j in jobs if isinstance(j.get("run_time"), (int, float))
             and not isinstance(j.get("run_time"), bool)]
    if not times:
        return Markup("")
    longest = max(max(times), 0.001)
    bars = [_bar(n, job, longest, job.get("job") == current) for n, job in enumerate(jobs)]
    width = max(len(jobs) * (BAR + GAP), MIN_WIDTH)
    return Markup(f'<svg class="chart" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{HEIGHT + 14}" '
                  f'viewBox="0 0 {width} {HEIGHT + 14}" role="img" aria-label="{escape(label)}">'
                  f'<title>{escape(label)}</title>{"".join(bars)}'
                  f'<text x="0" y="{HEIGHT + 12}" class="axis">max {longest:.1f}s</text></svg>')


def _bar(n: int, job: dict, longest: float, current: bool) -> str:
    run_time = job.get("run_time") if isinstance(job.get("run_time"), (int, float)) else 0
    height = max(2, round(HEIGHT * max(run_time, 0) / longest))
    status = job.get("status") if job.get("status") in STATUSES else "other"
    mark = " current" if current else ""
    sha = job.get("sha")[:7] if isinstance(job.get("sha"), str) else ""
    tip = escape(f"{sha} {job.get('kind') or ''} {status} {run_time:.1f}s")
    rect = (f'<rect class="bar b-{status}{mark}" x="{n * (BAR + GAP)}" y="{HEIGHT - height}" width="{BAR}" '
            f'height="{height}"><title>{tip}</title></rect>')
    job_id = job.get("job")
    return f'<a href="/jobs/{escape(job_id)}">{rect}</a>' if isinstance(job_id, str) and is_job_id(job_id) else rect
