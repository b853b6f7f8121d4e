"""Jobs as pushes across pages: every push once, whole, however the ids of one second interleave."""

import random

from trivialci.web.pushes import PAGE_JOBS, JobIndex, page_ids, whole_pushes


def test_pages_show_every_push_once_and_whole_with_interleaved_ids():
    chance, records = random.Random(7), {}
    for n in range(140):  # two pushes a second; each push queues build and lint; ids of a second sort by chance
        second = f"20261202T08{n // 2 // 60:02d}{n // 2 % 60:02d}Z"
        for kind in ("build", "lint"):
            job_id = f"{second}-{chance.randrange(16 ** 6):06x}"
            records[job_id] = {"job": job_id, "repo": "r", "branch": f"b{n}", "sha": f"{n:040x}", "kind": kind,
                               "status": "PASSED"}
    index, ids = JobIndex(records.get), sorted(records, reverse=True)
    seen, page = [], 0
    while True:
        chosen, more = page_ids(ids, page)
        seen += [(p["branch"], sorted(j["kind"] for j in p["jobs"])) for p in whole_pushes(index, ids, chosen, page)]
        if not more:
            break
        page += 1
    assert page == len(ids) // PAGE_JOBS - (len(ids) % PAGE_JOBS == 0)
    assert sorted(seen) == sorted((f"b{n}", ["build", "lint"]) for n in range(140))
