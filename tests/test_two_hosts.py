"""Across machines: a hub on one host, workers on others that see its spool through sshfs, artifacts in S3.

Every host is a network namespace of this machine (tests/hosts.py): the hub
host runs the hub on its local spool and sshd; a worker host mounts that spool
with sshfs over its own link and runs `trivialci worker` on the mount; moto's
S3 server runs on an "s3" host that every host reaches over a link of its
own, so cutting a worker off the hub leaves S3 reachable, as in a data centre.
The repository is reached over ssh too, as `cihub:PATH` (each host's ssh
config says where cihub is from there).
"""

import json
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import events_in, gated_build, release_build, wait_for
from gitrepo import Origin
from hosts import hosts  # noqa: F401 (a fixture)

from trivialci.spool import outbox
from trivialci.worker.jobrun import JobRun
from trivialci.jobs import JobStatus, iso_now
from trivialci.store import open_store

S3_PORT = 5000
BUILD_OK = '#!/bin/sh\necho "building on $(hostname)"\necho made > "$TRIVIALCI_ARTIFACTS/out.txt"\n'
S3_ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
          "AWS_EC2_METADATA_DISABLED": "true"}
MAKE_BUCKET = ("import boto3, os, sys; boto3.client('s3', endpoint_url=os.environ['TRIVIALCI_S3_ENDPOINT_URL'])"
               ".create_bucket(Bucket=sys.argv[1])")


class Site:
    """A hub host with the spool, worker hosts with sshfs mounts of it, an S3 host with a bucket."""

    def __init__(self, network, root: Path):
        pytest.importorskip("moto.server", reason="moto[server] is not installed: pip install -e '.[test]'")
        self.net, self.root = network, root
        self.spool = root / "spool"
        (self.spool / "inbox").mkdir(parents=True)
        self.store = "s3://ci-artifacts/jobs-of-site"
        self.origin = Origin(root / "git")
        self.repo = f"cihub:{self.origin.bare}"
        self._start_s3()
        self.workers: dict[str, subprocess.Popen] = {}

    def start_hub(self, lost_after: float = 60.0, pipeline: Path | None = None, env: dict | None = None) -> "Site":
        """The hub on its host, on the local spool (ticking often, so it notices lost workers soon)."""
        args = ["hub", "--spool", self.spool, "--tick", "0.3", *(["--pipeline", pipeline] if pipeline else [])]
        self.hub = self._node(self.net.hub, args, {"TRIVIALCI_LOST_AFTER": str(lost_after), **(env or {})})
        return self

    def env(self, host) -> dict[str, str]:
        """What a process on `host` needs: S3 at its address of the S3 host, and ssh that knows cihub."""
        config = self.root / f"ssh_config.{host.name}"
        config.write_text(f"Include {self.net.ssh_config}\nHost cihub\n    HostName {self.net.hub.address_for(host)}\n")
        return {**S3_ENV, "TRIVIALCI_S3_ENDPOINT_URL": f"http://{self.net.s3.address_for(host)}:{S3_PORT}",
                "GIT_SSH_COMMAND": f"ssh -F {config}", "TRIVIALCI_STORE": self.store}

    def start_worker(self, host, name: str) -> Path:
        """`trivialci worker` on `host`, on its own sshfs mount of the spool; its own disk is ROOT/NAME-disk."""
        mount = self.net.mount(host, self.spool, self.root / f"mnt-{name}")
        self.workers[name] = self._node(host, ["worker", "--spool", mount, "--name", name, "--kind", "build",
                                               "--heartbeat", "0.5", "--workdir", self.disk(name)], {})
        wait_for(lambda: self.heartbeat(name), timeout=30, message=f"worker {name}'s heartbeat on the hub's spool")
        return mount

    def disk(self, name: str) -> Path:
        return self.root / f"{name}-disk"

    def heartbeat(self, name: str) -> dict | None:
        try:
            return json.loads((self.spool / "workers" / name / "worker.json").read_text())
        except (OSError, ValueError):
            return None

    def push(self, branch: str, build: str) -> str:
        self.origin.commit({".trivialci/build": build}, branch=branch, push=False)
        (self.origin.work / ".trivialci" / "build").chmod(0o755)
        sha = self.origin.commit({}, branch=branch, message="executable")
        payload = json.dumps({"repo": self.repo, "branch": branch, "old": None, "new": sha})
        (self.spool / "inbox" / f"branch_update.{branch}.json").write_text(payload)  # as a person would
        return sha

    def jobs(self) -> dict[str, dict]:
        """The hub's view: state/jobs/*.json by job id."""
        found = {}
        for path in (self.spool / "state" / "jobs").glob("*.json"):
            try:
                found[path.stem] = json.loads(path.read_text())
            except ValueError:
                pass  # being replaced right now
        return found

    def hub_events(self, event_type: str) -> list[dict]:
        """Payloads of the events of a type that the hub has handled, in the order it handled them."""
        return [json.loads(p.read_text()) for p in events_in(self.spool, "done")
                if p.name.split("-", 1)[1].startswith(f"{event_type}.")]

    def history(self, *args: str) -> subprocess.CompletedProcess:
        """`trivialci history ARGS --store S3` run on the hub host."""
        return self.net.hub.run([sys.executable, "-m", "trivialci", "history", *args, "--store", self.store],
                                env=self.env(self.net.hub))

    def _start_s3(self) -> None:
        log = open(self.root / "moto.log", "w")
        self.net.logs.append(log)
        self.net.s3.popen([sys.executable, "-m", "moto.server", "-H", "0.0.0.0", "-p", str(S3_PORT)],
                          env=S3_ENV, stdout=log, stderr=subprocess.STDOUT)
        hub = self.net.hub
        wait_for(lambda: hub.connects(self.net.s3.address_for(hub), S3_PORT), timeout=60, interval=0.2,
                 message="moto's S3 server on the s3 host")
        made = hub.run([sys.executable, "-c", MAKE_BUCKET, "ci-artifacts"], env=self.env(hub))
        assert made.returncode == 0, made.stderr

    def _node(self, host, args: list, env: dict) -> subprocess.Popen:
        name = args[args.index("--name") + 1] if "--name" in args else "hub"
        log = open(self.root / f"{name}.stderr", "w")
        self.net.logs.append(log)
        return host.popen([sys.executable, "-m", "trivialci", *args, "--store", self.store, "--grace", "1",
                           *([] if "--workdir" in args else ["--workdir", self.root / f"{name}-disk"])],
                          env={**self.env(host), **env}, stdout=subprocess.DEVNULL, stderr=log)


def building(site: Site) -> list[str]:
    return [job_id for job_id, job in site.jobs().items() if job["status"] == "BUILDING"]


def built(site: Site) -> list[tuple[str, str]]:
    """(job, worker) of each build a worker ran, from its start_work logs ("JOB: PASSED (...)"): a build
    sees none of the host's files to note itself in."""
    found = []
    for log in site.spool.glob("workers/*/done/*/*-start_work.*.log"):
        for line in log.read_text().splitlines():
            job, _, outcome = line.partition(": ")
            if outcome.startswith("PASSED"):
                found.append((job, log.parts[-4]))
    return found


def passed(site: Site, count: int = 1):
    jobs = site.jobs()
    return jobs if len(jobs) == count and all(job["status"] == "PASSED" for job in jobs.values()) else None


def test_a_push_becomes_passed_on_a_worker_of_another_host_with_artifacts_in_s3(hosts, tmp_path):  # noqa: F811
    network = hosts(workers=1, s3=True)
    site = Site(network, tmp_path).start_hub()
    site.start_worker(network.workers[0], "w1")
    beat = site.heartbeat("w1")
    assert "fuse.sshfs" in beat["polling"] and beat["outbox"] == 0, beat
    assert beat["host"] == "w1"  # the worker runs on the other host: its lock and heartbeat say so
    status = network.hub.run([sys.executable, "-m", "trivialci", "status", "--spool", site.spool])
    assert "up, pid" in status.stdout and "w1               polling: the spool is on fuse.sshfs" in status.stdout

    sha = site.push("main", BUILD_OK)
    [(job_id, job)] = wait_for(lambda: passed(site), timeout=60, message="the job PASSED in the hub's view").items()
    assert job["worker"] == "w1" and job["sha"] == sha

    shown = site.history("show", job_id)
    assert shown.returncode == 0 and "PASSED" in shown.stdout and "out.txt" in shown.stdout, shown
    log = site.history("log", job_id)
    assert "building on w1" in log.stdout, log  # built on the worker host, read back on the hub host


def test_a_partition_mid_build_loses_and_duplicates_nothing(hosts, tmp_path):  # noqa: F811
    network = hosts(workers=1, s3=True)
    site = Site(network, tmp_path).start_hub(lost_after=120)
    worker_host = network.workers[0]
    site.start_worker(worker_host, "w1")
    site.push("main", gated_build(after=BUILD_OK[10:]))
    [job_id] = wait_for(lambda: building(site), timeout=60, message="the build to start")

    network.partition(worker_host)
    release_build(site.disk("w1"), job_id)  # the build ends while the worker cannot reach the spool
    outbox_dir = site.disk("w1") / "outbox"
    wait_for(lambda: any(".work_required." in name for name in outbox.waiting(outbox_dir)), timeout=60,
             message="the job's reports to wait in the worker's outbox")
    [job] = site.jobs().values()
    assert job["status"] == "BUILDING", "the hub learns nothing while the worker is cut off"

    network.heal(worker_host)
    [(job_id, job)] = wait_for(lambda: passed(site), timeout=60, message="the reports to reach the hub").items()
    wait_for(lambda: not outbox.waiting(outbox_dir), timeout=30, message="the outbox to be empty")
    wait_for(lambda: site.hub_events("work_done"), timeout=30, message="the hub to handle work_done")
    wait_for(lambda: not list((site.spool / "inbox").glob("*.json")), timeout=30, message="the hub to be idle")
    reports = [(e["status"], e.get("attempt")) for e in site.hub_events("work_status")
               if e["job"] == job_id and e.get("worker") == "w1" and "dispatched" not in e]
    assert reports == [("BUILDING", 1), ("PASSED", 1)], "each report once, in order"
    assert [e["job"] for e in site.hub_events("work_done")] == [job_id]
    assert "PASSED" in site.history("show", job_id).stdout  # uploaded during the partition: S3 was reachable
    assert "cannot read the hub's state" in site.history("log", job_id).stdout  # its stale check went on

    worker_root = site.spool / "workers" / "w1"
    wait_for(lambda: list(worker_root.glob("done/*/*-start_work.*.log")), timeout=30,
             message="the worker to record start_work")
    [start_work_log] = worker_root.glob("done/*/*-start_work.*.log")
    assert f"{job_id}: PASSED" in start_work_log.read_text()  # written on its own disk, moved to the spool after


def test_two_workers_on_two_hosts_never_run_one_job_twice(hosts, tmp_path):  # noqa: F811
    network = hosts(workers=2, s3=True)
    site = Site(network, tmp_path).start_hub()
    mounts = [site.start_worker(host, f"w{number}") for number, host in enumerate(network.workers, 1)]
    second = network.workers[1].run([sys.executable, "-m", "trivialci", "worker", "--spool", mounts[1],
                                     "--name", "w1", "--workdir", tmp_path / "another-w1"])
    assert second.returncode == 3, second.stderr  # node.lock is made with O_EXCL, which sshfs carries
    assert f"is already run by pid {site.heartbeat('w1')['pid']} on w1" in second.stderr
    build = '#!/bin/sh\necho "built on $(hostname)"\nsleep 0.3\n'
    branches = [f"b{i}" for i in range(6)]
    for branch in branches:
        site.push(branch, build)

    jobs = wait_for(lambda: passed(site, len(branches)), timeout=120, message="every job PASSED")
    builds = wait_for(lambda: len(built(site)) == len(branches) and built(site), timeout=30,
                      message="both workers to record their start_work events")
    assert sorted(job for job, _ in builds) == sorted(jobs), "each job built exactly once"
    assert {worker for _, worker in builds} == {"w1", "w2"}, "both hosts took work"
    assert {job["worker"] for job in jobs.values()} == {"w1", "w2"}


def test_the_hub_boots_a_worker_on_another_host_over_ssh(hosts, tmp_path):  # noqa: F811
    network = hosts(workers=1, s3=True)
    worker_host = network.workers[0]
    site = Site(network, tmp_path)
    mount = network.mount(worker_host, site.spool, tmp_path / "mnt")  # as the worker host's fstab would
    remote_env = " ".join(f"{name}={shlex.quote(value)}" for name, value in site.env(worker_host).items())
    site.start_hub(env={
        "TRIVIALCI_BOOT_HOSTS": f"build=root@{worker_host.address_for(network.hub)}",
        "TRIVIALCI_BOOT_SPOOL": str(mount),
        "TRIVIALCI_BOOT_SSH": network.ssh_command(),
        "TRIVIALCI_BOOT_COMMAND": f"env {remote_env} {sys.executable} -m trivialci",
        "TRIVIALCI_BOOT_ARGS": f"--workdir {site.disk('build-1')} --grace 1",
        "TRIVIALCI_BOOT_LOG": str(tmp_path / "build-1.remote.log"),
    })

    site.push("main", BUILD_OK)
    [job] = wait_for(lambda: passed(site), timeout=90, message="the job PASSED on a booted worker").values()
    assert job["worker"] == "build-1"
    assert site.heartbeat("build-1")["host"] == worker_host.name, "booted on the worker host, not the hub's"
    assert "building on w1" in site.history("log", job["job"]).stdout
    [boot_log] = (site.spool / "done").glob("*/*-boot_worker.*.log")
    assert f"starting worker build-1 (build) on root@{worker_host.address_for(network.hub)}: ... worker --spool" \
        in boot_log.read_text() and "AWS_SECRET_ACCESS_KEY" not in boot_log.read_text()


def test_a_worker_cut_off_past_its_deadline_is_lost_and_its_job_runs_again(hosts, tmp_path):  # noqa: F811
    network = hosts(workers=1, s3=True)
    worker_host, lost_after = network.workers[0], 4.0
    site = Site(network, tmp_path).start_hub(lost_after=lost_after)
    site.start_worker(worker_host, "w1")
    site.push("main", gated_build(after=BUILD_OK[10:]))
    [job_id] = wait_for(lambda: building(site), timeout=60, message="the build to start")

    network.partition(worker_host)
    release_build(site.disk("w1"), job_id)
    outbox_dir = site.disk("w1") / "outbox"
    wait_for(lambda: any(".work_required." in name for name in outbox.waiting(outbox_dir)), timeout=60,
             message="w1 to finish attempt 1, its reports waiting in its outbox")
    lost = wait_for(lambda: [e for e in site.hub_events("work_status") if e["status"] == "LOST"], timeout=60,
                    message="the hub to mark the job LOST")
    last_beat = (site.spool / "workers" / "w1" / "worker.json").stat().st_mtime
    [declared] = [p for p in (site.spool / "done").glob("*/*-work_status.*.json") if '"LOST"' in p.read_text()]
    assert lost[0]["job"] == job_id and lost[0]["attempt"] == 1
    assert declared.stat().st_mtime - last_beat >= lost_after, "LOST only after the heartbeat deadline"

    # The hub boots a worker of its own for the job's next attempt; the cut-off worker comes back later.
    wait_for(lambda: building(site) and site.jobs()[job_id]["attempt"] == 2, timeout=90, message="attempt 2 to build")
    release_build(Path(site.heartbeat("build-1")["workdir"]), job_id)
    job = wait_for(lambda: passed(site), timeout=90, message="the next attempt to pass")[job_id]
    assert job["attempt"] == 2 and job["worker"] == "build-1"
    network.heal(worker_host)
    wait_for(lambda: not outbox.waiting(outbox_dir), timeout=30, message="w1's late reports to be delivered")
    wait_for(lambda: not list((site.spool / "inbox").glob("*.json")), timeout=30, message="the hub to be idle")
    late = [e for e in site.hub_events("work_status") if e.get("worker") == "w1" and e["status"] == "PASSED"]
    assert late and late[0]["attempt"] == 1, "w1's report of attempt 1 arrived..."
    assert site.jobs()[job_id]["attempt"] == 2 and site.jobs()[job_id]["worker"] == "build-1", "...and was ignored"


def test_an_attempt_given_up_meanwhile_does_not_overwrite_a_later_attempts_record(tmp_path):
    """An attempt cut off past its deadline still uploads when it ends (it cannot ask the hub): not over a later one."""
    store, job = open_store(tmp_path / "store"), "20261125T000000Z-0000a1"
    store.put_bytes(f"jobs/{job}/job.json", json.dumps({"job": job, "attempt": 2, "status": "PASSED"}).encode())
    store.put_bytes(f"jobs/{job}/log.txt", b"attempt 2's log\n")
    package = {"job": job, "repo": "r", "branch": "main", "sha": "0" * 40, "kind": "build", "attempt": 1}
    run = JobRun(package, worker="w1", workdir=tmp_path / "disk", spool=tmp_path / "spool", store_url=str(store.url))
    run.log_path.parent.mkdir(parents=True)
    run.log_path.write_text("attempt 1's log\n")
    run.record = run._make_record(iso_now(), 0, JobStatus.PASSED, "exit status 0")

    run._upload()
    assert json.loads(store.get_bytes(f"jobs/{job}/job.json"))["attempt"] == 2
    assert store.get_bytes(f"jobs/{job}/log.txt") == b"attempt 2's log\n"
    assert "not uploaded: attempt 2 of this job is in the store already" in run.record["reason"]
