"""Every build in a bubblewrap sandbox: a build that knows every path of the CI harms none of it.

Real bwrap, a real hub on a copy of the shipped pipeline, the workers it boots,
real git and a directory store. The attacks are those a person with push
access to one branch tried on a worker that ran builds as itself, with its
whole environment: forging events, rewriting the pipeline and the store,
reading the secrets, and leaving processes behind.
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import uuid
from pathlib import Path

import pytest
from conftest import _processes_mentioning, gated_build, pid_alive, release_build, run_cli, wait_for
from test_flow import building, origin, push_event, store_jobs  # noqa: F401 (origin is a fixture)

from trivialci.cli.options import default_pipeline


def bwrap_works() -> bool:
    bwrap = shutil.which("bwrap")
    return bool(bwrap) and subprocess.run([bwrap, "--ro-bind", "/", "/", "--unshare-pid", "true"],
                                          capture_output=True).returncode == 0


pytestmark = pytest.mark.skipif(not bwrap_works(), reason="no working bwrap here: apt-get install bubblewrap")

TOKEN = "tok-4f1c9e2ab7d3-deploy"
REPO_TOKEN = "repo-only-8e0b5c71a2"
OTHER_TOKEN = "other-repos-0d9f3a61"
SEEDED_JOB = "20260101T000000Z-aaaaaa"


@pytest.fixture
def secrets_dir(tmp_path, origin):  # noqa: F811
    """build.env for every repository; app/ for this origin only; other/ for another repository."""
    directory = tmp_path / "secrets"
    for path, text in {"build.env": f"# deploys\nDEPLOY_TOKEN={TOKEN}\n",
                       "app/repo": f"{origin.bare}\n", "app/build.env": f"REPO_TOKEN={REPO_TOKEN}\n",
                       "other/repo": "/srv/git/other.git\n", "other/build.env": f"OTHER_TOKEN={OTHER_TOKEN}\n"}.items():
        (directory / path).parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        (directory / path).write_text(text)
        (directory / path).chmod(0o600)
    directory.chmod(0o700)
    return directory


@pytest.fixture
def ci(tmp_path, start_node, secrets_dir):
    """A hub on a copy of the shipped pipeline, with a secrets directory its booted workers inherit."""
    spool, store, pipeline = tmp_path / "spool", tmp_path / "store", tmp_path / "pipeline"
    shutil.copytree(default_pipeline(), pipeline)
    seeded = store / "jobs" / SEEDED_JOB / "job.json"
    seeded.parent.mkdir(parents=True)
    seeded.write_text('{"job": "%s", "status": "PASSED"}\n' % SEEDED_JOB)
    hub = start_node("hub", "--spool", spool, "--store", f"file://{store}", "--workdir", tmp_path / "ciwork" / "hub",
                     "--pipeline", pipeline, "--tick", "0.3", "--grace", "1",
                     env={"TRIVIALCI_SECRETS": str(secrets_dir)})
    yield {"spool": spool, "store": store, "pipeline": pipeline, "hub": hub, "workdir": tmp_path / "ciwork" / "build-1"}
    hub.stop()
    for pid in booted_workers(spool):
        os.kill(pid, signal.SIGTERM)
    wait_for(lambda: not [pid for pid in booted_workers(spool) if pid_alive(pid)], timeout=30,
             message="the booted workers to stop")


def booted_workers(spool: Path) -> list[int]:
    from trivialci.up import local_worker_pids
    return local_worker_pids(spool)


def daemons(token: str) -> str:
    """Three ways to outlive a build: a background child, a setsid double fork, an env -i daemon."""
    sleeper = f'"$TRIVIALCI_PYTHON" -c "import time; time.sleep(600)" {token}'
    return (f"{sleeper} >/dev/null 2>&1 &\n"
            f"setsid sh -c '{sleeper} >/dev/null 2>&1 &' </dev/null\n"
            f"env -i TRIVIALCI_PYTHON=\"$TRIVIALCI_PYTHON\" setsid sh -c '{sleeper} &' </dev/null >/dev/null 2>&1\n")


def attacks(ci: dict, secrets: Path) -> dict[str, str]:
    """What the build tries, by name; each must fail."""
    spool, store, workdir, pipeline = ci["spool"], ci["store"], ci["workdir"], ci["pipeline"]
    forged = json.dumps({"job": SEEDED_JOB, "status": "PASSED", "attempt": 1, "worker": "build-1"})
    other = json.dumps({"repo": "/srv/git/other.git", "branch": "main", "old": None, "new": "a" * 40})
    return {
        "write the hub's inbox": f"echo '{forged}' > {spool}/inbox/work_status.forged.json",
        "emit to the hub": f"\"$TRIVIALCI_PYTHON\" -m trivialci emit branch_update '{other}' --spool {spool}",
        "write a worker's inbox": f"echo '{forged}' > {spool}/workers/build-1/inbox/start_work.forged.json",
        "append to the pipeline": f"echo 'import os; os.system(\"touch /tmp/pwned\")' >> {pipeline}/start_work.py",
        "overwrite a job.json in the store": f"echo '{{}}' > {store}/jobs/{SEEDED_JOB}/job.json",
        "add a job to the store": f"mkdir -p {store}/jobs/forged && echo '{{}}' > {store}/jobs/forged/job.json",
        "read the secrets file": f"cat {secrets}/build.env",
        "list the workdir's logs": f"ls {workdir}/logs",
        "see another job's worktree": f"ls -A {workdir}/jobs | grep -v \"^$TRIVIALCI_JOB\\$\"",
        "read the mirrors' lock": f"ls {workdir}/mirrors/*.lock",
        "find the CI's paths in its environment": "env | grep -E '^TRIVIALCI_(SPOOL|WORKDIR|PIPELINE|NODE_DIR|"
                                                   "STORE|SECRETS)='",
        "read the worker's environment": "grep -l TRIVIALCI_SPOOL /proc/[0-9]*/environ",
        "make the artifacts root a link": 'rm -rf "$TRIVIALCI_ARTIFACTS" && ln -s / "$TRIVIALCI_ARTIFACTS"',
        "write outside its worktree": f"touch {origin_dir(ci)}/pwned",
    }


def origin_dir(ci: dict) -> Path:
    return ci["spool"].parent / "work"


def attack_build(ci: dict, secrets: Path, token: str) -> str:
    tries = "".join(f"try {json.dumps(name)} {shell_quote(command)}\n" for name, command in attacks(ci, secrets).items())
    return ("#!/bin/sh\n"
            'try() { if sh -c "$2" >/dev/null 2>&1; then echo "ATTACK $1: succeeded"; '
            'else echo "ATTACK $1: refused"; fi; }\n'
            f"{tries}{daemons(token)}"
            'ln -s /etc/hostname "$TRIVIALCI_ARTIFACTS/hostname"\n'
            "echo the build went on to its end\n")


def shell_quote(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"


def stored_log(ci: dict, job_id: str) -> str:
    return (ci["store"] / "jobs" / job_id / "log.txt").read_text()


def test_a_build_that_knows_every_path_of_the_ci_can_harm_none_of_it(ci, origin, secrets_dir):  # noqa: F811
    token = f"trivialci-daemon-{uuid.uuid4().hex}"
    pipeline_before = (ci["pipeline"] / "start_work.py").read_bytes()
    sha = origin.commit("main", {"build": attack_build(ci, secrets_dir, token)})
    push_event(ci["spool"], origin, "main", sha)

    job = wait_for(lambda: store_jobs(ci["store"]).get(next(iter(built(ci)), "")), timeout=90, message="the record")
    assert not _processes_mentioning(token), "nothing the build started outlives it"
    log = stored_log(ci, job["job"])
    assert "succeeded" not in log, log
    assert log.count(": refused") == len(attacks(ci, secrets_dir)), log
    assert job["status"] == "PASSED" and "the build went on to its end" in log
    assert job["files"] == [], "a link in the artifacts is not followed, and the root stayed a directory"

    assert (ci["pipeline"] / "start_work.py").read_bytes() == pipeline_before
    assert json.loads((ci["store"] / "jobs" / SEEDED_JOB / "job.json").read_text())["status"] == "PASSED"
    assert not (ci["store"] / "jobs" / "forged").exists() and not (origin_dir(ci) / "pwned").exists()
    assert not list(ci["spool"].rglob("*forged*")), "no forged event anywhere in the spool"
    assert not [p for p in ci["spool"].glob("done/*/*-branch_update.*.json") if "other.git" in p.read_text()]


def built(ci: dict) -> list[str]:
    """Ids of the jobs the hub knows, but the seeded one."""
    return [p.stem for p in (ci["spool"] / "state" / "jobs").glob("*.json") if p.stem != SEEDED_JOB]


SECRET_BUILD = """#!/bin/sh
echo "git head: $(git rev-parse HEAD)"
git log -1 --format='git subject: %s'
git status --porcelain >/dev/null && echo "git status works"
echo "token: $DEPLOY_TOKEN"
printf 'split: %s' "$(printf %s "$DEPLOY_TOKEN" | cut -c1-6)"
sleep 0.3
printf '%s done\\n' "$(printf %s "$DEPLOY_TOKEN" | cut -c7-)"
echo "token sha: $(printf %s "$DEPLOY_TOKEN" | sha256sum | cut -c1-16)"
echo "repo token: $REPO_TOKEN, other token set: ${OTHER_TOKEN:+yes}"
"""


def sha16(text: str) -> str:
    import hashlib
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def test_git_works_and_a_secret_reaches_the_build_masked_in_the_live_and_stored_log(ci, origin):  # noqa: F811
    sha = origin.commit("main", {"build": SECRET_BUILD}, message="with secrets")
    push_event(ci["spool"], origin, "main", sha)
    [(job_id, job)] = wait_for(lambda: store_jobs(ci["store"]) and {
        k: v for k, v in store_jobs(ci["store"]).items() if k != SEEDED_JOB}, timeout=90, message="the record").items()
    assert job["status"] == "PASSED", stored_log(ci, job_id)
    live = (ci["workdir"] / "logs" / f"{job_id}.log").read_text()
    for log in (live, stored_log(ci, job_id)):
        assert f"git head: {sha}" in log and "git subject: with secrets" in log and "git status works" in log
        assert " token: ***\n" in log and " split: *** done\n" in log, log
        assert f"token sha: {sha16(TOKEN)}" in log, "the build had the secret itself"
        assert "repo token: ***, other token set: \n" in log, "its repository's secret, not another's"
        assert TOKEN not in log and TOKEN[:6] + TOKEN[6:] not in log and REPO_TOKEN not in log
    for root in (ci["spool"], ci["store"]):
        leaked = [p for p in root.rglob("*") if p.is_file() and TOKEN.encode() in p.read_bytes()]
        assert not leaked, f"the secret is in {leaked}"


UNTRUSTED_BUILD = '#!/bin/sh\necho "token set: ${DEPLOY_TOKEN:+yes}${REPO_TOKEN:+yes}"\n'


def test_a_fork_pull_requests_job_gets_no_secret_unless_its_approval_says_so(ci, origin):  # noqa: F811
    sha = origin.commit("main", {"build": UNTRUSTED_BUILD})
    marks = {"pr/1": {"trusted": False}, "pr/2": {"trusted": False, "approval": {"by": "maintainer"}},
             "pr/3": {"trusted": "false"}, "pr/4": {"trusted": False, "approval": {"by": "maintainer", "secrets": True}}}
    for branch, mark in marks.items():
        payload = {"repo": str(origin.bare), "branch": branch, "old": None, "new": sha, **mark}
        assert run_cli("emit", "branch_update", json.dumps(payload), "--spool", ci["spool"]).returncode == 0
    jobs = wait_for(lambda: len(store_jobs(ci["store"])) == 5 and store_jobs(ci["store"]), timeout=120,
                    message="four records")
    got = {job["branch"]: "token set: yesyes" in stored_log(ci, job_id) for job_id, job in jobs.items()
           if job_id != SEEDED_JOB}
    assert got == {"pr/1": False, "pr/2": False, "pr/3": False, "pr/4": True}
    [untrusted] = [job_id for job_id, job in jobs.items() if job.get("branch") == "pr/1"]
    assert "is not trusted" in stored_log(ci, untrusted)


def test_a_worktree_whose_git_file_the_build_redirected_is_still_removed(ci, origin):  # noqa: F811
    """The worker's clean-up meets what the build left: git refuses a worktree that points elsewhere."""
    sha = origin.commit("main", {"build": "#!/bin/sh\necho 'gitdir: /etc' > .git\n"})
    push_event(ci["spool"], origin, "main", sha)
    job = wait_for(lambda: store_jobs(ci["store"]).get(next(iter(built(ci)), "")), timeout=90, message="the record")
    assert job["status"] == "PASSED"
    wait_for(lambda: not (ci["workdir"] / "jobs" / job["job"]).exists(), message="the worktree to be removed")
    [mirror] = ci["spool"].parent.rglob("mirrors/*.git")  # the worker's, or the hub's it shares on one host
    wait_for(lambda: not list((mirror / "worktrees").glob("*")), message="the mirror to forget it")


def test_a_build_that_times_out_leaves_nothing_behind(ci, origin):  # noqa: F811
    token = f"trivialci-daemon-{uuid.uuid4().hex}"
    sha = origin.commit("slow", {"build": f"#!/bin/sh\n{daemons(token)}echo started\nsleep 600\n"})
    payload = {"repo": str(origin.bare), "branch": "slow", "old": None, "new": sha, "params": {"timeout": 2}}
    run_cli("emit", "branch_update", json.dumps(payload), "--spool", ci["spool"])
    job = wait_for(lambda: store_jobs(ci["store"]).get(next(iter(built(ci)), "")), timeout=90, message="the record")
    assert job["status"] == "FAILED" and job["reason"].startswith("timed out after 2 s"), job
    assert not _processes_mentioning(token), "nothing the build started outlives its timeout"


def test_a_worker_that_stops_takes_its_builds_sandbox_with_it(ci, origin):  # noqa: F811
    token = f"trivialci-daemon-{uuid.uuid4().hex}"
    sha = origin.commit("main", {"build": gated_build(before=daemons(token))})
    push_event(ci["spool"], origin, "main", sha)
    [job] = wait_for(lambda: building(ci["spool"]), timeout=90, message="the build to start")
    wait_for(lambda: len(_processes_mentioning(token)) >= 3, timeout=30, message="the build's three daemons")
    worker = json.loads((ci["spool"] / "workers" / job["worker"] / "worker.json").read_text())["pid"]
    os.kill(worker, signal.SIGTERM)
    wait_for(lambda: not pid_alive(worker), timeout=60, message="the worker to stop")
    assert not _processes_mentioning(token), "nothing the build started outlives the worker"
    assert not _processes_mentioning(str(ci["workdir"] / "jobs" / job["job"] / ".trivialci"))


def test_a_worker_without_bwrap_refuses_to_start_and_starts_with_sandbox_off(tmp_path):
    spool, no_bwrap = tmp_path / "spool", tmp_path / "bin"
    no_bwrap.mkdir()
    args = ["worker", "--spool", spool, "--name", "w1", "--workdir", tmp_path / "w1", "--drain"]
    refused = run_cli(*args, env={"PATH": str(no_bwrap)})
    assert refused.returncode == 5 and len(refused.stderr.strip().splitlines()) == 1, refused.stderr
    assert "install bubblewrap" in refused.stderr and "--sandbox off" in refused.stderr
    started = run_cli(*args, "--sandbox", "off", env={"PATH": str(no_bwrap)})
    assert started.returncode == 0, started.stderr
    assert "WARNING: builds run WITHOUT a sandbox" in started.stderr


def test_a_bwrap_that_cannot_make_a_sandbox_is_refused_with_what_it_said(tmp_path):
    broken = tmp_path / "bwrap"
    broken.write_text("#!/bin/sh\necho 'bwrap: No permissions to create new namespace' >&2\nexit 1\n")
    broken.chmod(0o755)
    refused = run_cli("worker", "--spool", tmp_path / "spool", "--name", "w1", "--workdir", tmp_path / "w1",
                      "--drain", env={"TRIVIALCI_BWRAP": str(broken)})
    assert refused.returncode == 5 and len(refused.stderr.strip().splitlines()) == 1, refused.stderr
    assert "No permissions to create new namespace" in refused.stderr and "user namespaces" in refused.stderr


def test_up_without_a_sandbox_warns_at_start_and_still_builds(origin, tmp_path, start_node):  # noqa: F811
    from test_flow import BUILD_OK
    sha = origin.commit("main", {"build": BUILD_OK})
    spool, store = tmp_path / "spool", tmp_path / "store"
    up = start_node("up", "--repo", origin.bare, "--spool", spool, "--store", f"file://{store}",
                    "--workdir", tmp_path / "ciwork", "--ui", "off", env={"TRIVIALCI_BWRAP": str(tmp_path / "none")})
    try:
        [job] = wait_for(lambda: store_jobs(store), timeout=60, message="the build").values()
        assert job["status"] == "PASSED" and job["sha"] == sha
        first = up.stderr().splitlines()[0]
        assert "WARNING: builds run WITHOUT a sandbox" in first and "install bubblewrap" in first
    finally:
        up.stop(signal.SIGINT, timeout=60)


def run_sandboxed(tmp_path: Path, script: str, **policy) -> subprocess.CompletedProcess:
    """`sh -c script` in a sandbox whose home is tmp_path/home, writing only tmp_path/worktree."""
    from trivialci.worker.sandbox import Sandbox
    worktree, home = tmp_path / "worktree", tmp_path / "home"
    worktree.mkdir(exist_ok=True)
    home.mkdir(exist_ok=True)
    sandbox = Sandbox(shutil.which("bwrap"), home=str(home), **policy)
    command = sandbox.command(["/bin/sh", "-c", script], worktree, writable=[worktree])
    return subprocess.run(command, cwd=worktree, env=sandbox.environment(), capture_output=True, text=True,
                          timeout=30)


def test_a_sandboxed_root_has_no_capability_and_a_home_and_tmp_of_its_own(tmp_path):
    hidden = tmp_path / "spool"
    (hidden / "inbox").mkdir(parents=True)
    (tmp_path / "home" / ".ssh").mkdir(parents=True)
    script = (f"grep CapEff /proc/self/status; echo home $HOME: $(ls -A $HOME); echo tmp: $(ls -A /tmp); "
              f"echo hidden: $(ls -A {hidden}); touch {hidden}/x || echo hidden read-only; "
              "touch $HOME/x /tmp/x && echo home and tmp writable; echo pid 1: $(cat /proc/1/comm)")
    done = run_sandboxed(tmp_path, script, hidden=(str(hidden),))
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "CapEff:\t0000000000000000", f"home {tmp_path / 'home'}:", f"tmp: {tmp_path.parts[2]}", "hidden:",
        "hidden read-only", "home and tmp writable", "pid 1: bwrap"], done.stderr
    assert not (tmp_path / "home" / "x").exists() and not (hidden / "x").exists()


def test_build_network_none_leaves_only_loopback(tmp_path):
    server = socket.create_server(("127.0.0.1", 0))
    try:
        probe = f"echo > /dev/tcp/127.0.0.1/{server.getsockname()[1]}"
        script = f"grep -c : /proc/net/dev; bash -c '{probe}' 2>/dev/null && echo reached || echo unreachable"
        cut, host = run_sandboxed(tmp_path, script, network=False), run_sandboxed(tmp_path, script)
    finally:
        server.close()
    assert cut.stdout.split() == ["1", "unreachable"], cut.stderr
    assert host.stdout.split()[1] == "reached"


def test_what_is_hidden_stays_hidden_inside_what_is_bound_back(tmp_path):
    """The pipeline of an interpreter installed in the (private) home: the interpreter shows, the pipeline not."""
    from trivialci.worker.sandbox import Sandbox
    home, worktree = tmp_path / "home", tmp_path / "work" / "jobs" / "JOB"
    (home / "venv" / "pipeline").mkdir(parents=True)
    (home / "venv" / "pipeline" / "start_work.py").write_text("# the pipeline\n")
    (home / "venv" / "python").write_text("# the interpreter\n")
    worktree.mkdir(parents=True)
    (tmp_path / "work" / "logs").mkdir()
    sandbox = Sandbox(shutil.which("bwrap"), home=str(home),
                      hidden=(str(home / "venv" / "pipeline"), str(tmp_path / "work")))
    script = f"ls -A {home}/venv; echo pipeline: $(ls -A {home}/venv/pipeline); ls -A {tmp_path}/work/*; touch x"
    command = sandbox.command(["/bin/sh", "-c", script], worktree, writable=[worktree], readable=[home / "venv"])
    done = subprocess.run(command, capture_output=True, text=True, timeout=30)
    assert done.stdout.split("\n") == ["pipeline", "python", "pipeline:", "JOB", ""], done.stdout + done.stderr
    assert (worktree / "x").exists()
