"""Jobs as pushes: the jobs of one commit of one branch, together; the branches and their newest push.

state/jobs/ holds one file per job, named by its id, which starts with the
time it was queued: listing the names (not reading them) gives the order. A
page reads only the records it shows. What needs a branch's jobs (the
branches view, a branch's page, a chart of its run times) walks the names
newest first, reading records until it has found what it needs, and at most
MAX_WALK of them. A final job's record never changes, so its summary is kept
in memory (at most MAX_KEPT of them): a walk that comes again reads only the
records of jobs still running.

The pushes that built nothing (a branch skipped, no executable files in
.trivialci/, a push seen twice) are in no job: they are the notes that the
hub's branch_update script printed into its events' logs, read from today's
and yesterday's done/ (at most RECENT_PUSH_EVENTS of them, the first
NOTE_BYTES of each log).
"""

import calendar
import re
import threading
import time
from collections import OrderedDict

from ..jobs import FINAL, JobStatus

PAGE_JOBS = 50
PUSH_SECONDS = 60  # jobs of one commit queued further apart than this are two pushes (the commit pushed again)
MAX_WALK = 20000  # job records a walk may read (or find kept) before it gives up
MAX_KEPT = 20000  # summaries of final jobs kept in memory
RECENT_PUSH_EVENTS = 300
NOTE_BYTES = 4096
SUMMARY_FIELDS = ("job", "repo", "branch", "sha", "kind", "status", "queued", "started", "ended", "run_time",
                  "subject", "author", "worker", "stage", "reason", "attempt", "push")
FINAL_WORDS = {status.value for status in FINAL}
EVENT_NAME = re.compile(r"(\d{6}\.\d{6})-branch_update(\.[A-Za-z0-9_+=:,@.-]+)?\.json\Z")
GITIGNORE_HINT = ("if .trivialci/ has files in your working copy, they may not be committed, or be ignored: "
                  "`git check-ignore -v .trivialci/*` names the .gitignore line; `git add -f .trivialci` adds them")


def summary(record: dict) -> dict:
    """What the pages show of a job record."""
    return {field: record.get(field) for field in SUMMARY_FIELDS}


class JobIndex:
    """Job summaries by job id, read through `read_job(job_id)`; final ones kept (see the module docstring)."""

    def __init__(self, read_job):
        self.read_job = read_job
        self.kept = OrderedDict()
        self.lock = threading.Lock()

    def get(self, job_id: str) -> dict | None:
        with self.lock:
            found = self.kept.get(job_id)
        if found is not None:
            return found
        record = self.read_job(job_id)
        if record is None:
            return None
        shown = summary(record)
        if shown["status"] in FINAL_WORDS:
            self._keep(job_id, shown)
        return shown

    def _keep(self, job_id: str, shown: dict) -> None:
        with self.lock:
            self.kept[job_id] = shown
            while len(self.kept) > MAX_KEPT:
                self.kept.popitem(last=False)

    def walk(self, ids: list[str]):
        """Summaries of `ids` (newest first) in that order, at most MAX_WALK; missing ones skipped."""
        for job_id in ids[:MAX_WALK]:
            shown = self.get(job_id)
            if shown is not None:
                yield shown


def push_key(job: dict) -> tuple:
    """What makes jobs one push: the id of its first job ("push", given to jobs queued in stages), else the
    commit of the branch (and when it was queued: group())."""
    if isinstance(job.get("push"), str):
        return (job["push"],)
    return job.get("repo"), job.get("branch"), job.get("sha")


def group(jobs: list[dict]) -> list[dict]:
    """The jobs of one (repo, branch, sha) queued within PUSH_SECONDS of each other as one push: its commit, and
    its jobs by stage and kind. Job ids sort by the second they were queued in, then by chance, so the jobs of
    two pushes of one second may come interleaved."""
    pushes, open_pushes = [], {}
    for job in jobs:
        key, when = push_key(job), _queued_second(job)
        found = open_pushes.get(key)
        if found is not None and abs(found[0] - when) <= PUSH_SECONDS:
            found[1].append(job)
            continue
        open_pushes[key] = (when, [job])
        pushes.append(open_pushes[key][1])
    return [_push(found) for found in pushes]


def _queued_second(job: dict) -> float:
    """When the job was queued, from its id (YYYYmmddTHHMMSSZ-...): every job has one, of one format."""
    job_id = job.get("job")
    try:
        return calendar.timegm(time.strptime(job_id[:16], "%Y%m%dT%H%M%SZ")) if isinstance(job_id, str) else 0.0
    except ValueError:
        return 0.0


def _push(jobs: list[dict]) -> dict:
    first = jobs[-1]  # the oldest: the push's time
    jobs = sorted(jobs, key=lambda j: (j.get("stage") if isinstance(j.get("stage"), int) else 0, str(j.get("kind"))))
    return {"repo": first.get("repo"), "branch": first.get("branch"), "sha": first.get("sha"),
            "subject": next((j["subject"] for j in jobs if j.get("subject")), None),
            "author": next((j["author"] for j in jobs if j.get("author")), None),
            "queued": first.get("queued"), "status": overall(jobs), "jobs": jobs}


def overall(jobs: list[dict]) -> str | None:
    """A push's one word: FAILED if one failed, running while one runs, PASSED when all passed."""
    words = [j.get("status") for j in jobs]
    for word in ("FAILED", "LOST", "UNSTORED", "BUILDING", "STARTING", "QUEUED", "HELD", "WAITING"):
        if word in words:
            return word
    if words and all(w in ("PASSED", "SKIPPED") for w in words) and "PASSED" in words:
        return "PASSED"
    return words[0] if words else None


def page_ids(ids: list[str], page: int) -> tuple[list[str], bool]:
    """The job ids of jobs page `page` (`ids` newest first) and whether older ones follow."""
    return ids[page * PAGE_JOBS:(page + 1) * PAGE_JOBS], len(ids) > (page + 1) * PAGE_JOBS


def whole_pushes(index: JobIndex, ids: list[str], chosen: list[str], page: int) -> list[dict]:
    """The jobs of `chosen` (a page of `ids`), never splitting a push: the jobs of a push begun on the page before
    are left to it, and those of one that goes on past the page's end are brought in (a page more at most)."""
    jobs = [j for j in (index.get(i) for i in chosen) if j]
    if not jobs:
        return []
    start, end = page * PAGE_JOBS, page * PAGE_JOBS + len(chosen)
    before = {push_key(j) for j in _near(index, ids[max(0, start - PAGE_JOBS):start][::-1], jobs[0])}
    jobs = [j for j in jobs if push_key(j) not in before or _apart(j, jobs[0])]
    keys = {push_key(j) for j in jobs}
    jobs += [j for j in _near(index, ids[end:end + PAGE_JOBS], jobs[-1] if jobs else None) if push_key(j) in keys]
    return group(jobs)


def _near(index: JobIndex, ids: list[str], anchor: dict | None) -> list[dict]:
    """The jobs of `ids` (walked in that order) until one was queued more than PUSH_SECONDS from `anchor`."""
    found = []
    for job_id in ids if anchor else []:
        job = index.get(job_id)
        if job is None:
            continue
        if _apart(job, anchor):
            break
        found.append(job)
    return found


def _apart(job: dict, other: dict) -> bool:
    return abs(_queued_second(job) - _queued_second(other)) > PUSH_SECONDS


def branch_pushes(index: JobIndex, ids: list[str], repo_branch, count: int) -> list[dict]:
    """The newest `count` pushes of one branch ((repo, branch); repo None: any)."""
    repo, branch = repo_branch
    jobs = []
    for job in index.walk(ids):
        if job.get("branch") == branch and (repo is None or job.get("repo") == repo):
            jobs.append(job)
            if len({push_key(j) for j in jobs}) > count:
                jobs.pop()
                break
    return group(jobs)


def run_times(index: JobIndex, ids: list[str], branch: str, kind: str, count: int) -> list[dict]:
    """The newest `count` ended jobs of `branch` and `kind` with a run time, oldest first (for the chart)."""
    found = []
    for job in index.walk(ids):
        if job.get("branch") == branch and job.get("kind") == kind and isinstance(job.get("run_time"), (int, float)):
            found.append(job)
            if len(found) == count:
                break
    return found[::-1]


def newest_per_branch(index: JobIndex, ids: list[str], wanted: set) -> dict:
    """{(repo, branch): its newest push} for the branches in `wanted`, found by one walk that ends once each
    has been found and its push is complete (a push's jobs are queued together, so their ids are together)."""
    first_job, jobs = {}, {}
    for job in index.walk(ids):
        key = (job.get("repo"), job.get("branch"))
        first_job.setdefault(key, job)
        if push_key(job) == push_key(first_job[key]):
            jobs.setdefault(key, []).append(job)
        elif len(first_job) >= len(wanted) and wanted <= first_job.keys():
            break
    return {key: group(found)[0] for key, found in jobs.items() if key in wanted}


def note_kind(text: str) -> str:
    """What a branch_update note says became of the push."""
    for word in ("skipped", "nothing to build", "already queued", "refused", "queued"):
        if text.startswith(word):
            return word
    return "other"


def is_push_event(name: str) -> bool:
    return bool(EVENT_NAME.match(name))


def hint_for(kind: str) -> str | None:
    return GITIGNORE_HINT if kind == "nothing to build" else None


def status_word(value) -> str | None:
    return value if value in {s.value for s in JobStatus} else None
