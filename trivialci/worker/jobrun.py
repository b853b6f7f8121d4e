"""One job on a worker, from checkout to record.

On the worker's own disk (WORKDIR, never the spool):
    WORKDIR/mirrors/                 the git mirrors (see trivialci/git/mirror.py)
    WORKDIR/jobs/JOB/                the job's worktree, removed when it ends
    WORKDIR/jobs/JOB.pid             {pid, start_ticks} of the build's group leader, while it runs
    WORKDIR/jobs/JOB.cancel          {status, reason}: a request to stop it
    WORKDIR/artifacts/JOB/           $TRIVIALCI_ARTIFACTS: uploaded as files/, then removed
    WORKDIR/upstream/JOB/KIND/       $TRIVIALCI_UPSTREAM/KIND: an earlier stage's files (upstream.py)
    WORKDIR/logs/JOB.log             the build's output, live, each line with its UTC time; uploaded as log.txt
    WORKDIR/logs/JOB.ended           written when the job is over: its log is complete

The build runs `.trivialci/KIND` from the worktree, in its own process group,
in a sandbox (worker/sandbox.py: it writes only its worktree, its artifacts and
private temporaries, and sees none of the CI's paths), with a trusted job's
secrets (worker/secrets.py; masked in its log), TRIVIALCI_JOB, _BRANCH, _SHA,
_KIND, _REPO, _ATTEMPT, _ARTIFACTS, _UPSTREAM, _STAGE, _PYTHON (the interpreter that runs
TrivialCi) and each parameter as TRIVIALCI_PARAM_NAME. Its record goes to the store as
jobs/JOB/job.json after log.txt and files/, so a job.json never points at
files that are not there yet; files/ is emptied first, so that a retry lists
only its own files. A job whose log, files or record the store refused ends
UNSTORED (its "verdict" says how the build itself ended), never as a plain PASSED.

What the build left is hostile: the log uploaded is the one the worker wrote,
read through the descriptor it kept (buildlog.BuildLog), and only regular
files physically under WORKDIR/artifacts/JOB are stored, walked from WORKDIR
without following a link (see trivialci/store).

The package is checked field by field first (package.py), and every path
above is made with spool.layout.under: nothing in an event can name a path
outside WORKDIR. Only the start_work script that started a build ever signals
it, through its own unreaped child (so the group cannot be another's): on its
timeout, or when it sees JOB.cancel, which cancel_work writes. No pid is ever
read from a file to be signalled.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from ..spool import processes
from ..spool.atomic import remove_if_present, write_atomically
from ..spool.files import open_directory_under
from ..spool.layout import check_node_name, under
from . import limits
from .buildlog import BuildLog, LogCopier
from .sandbox import Sandbox
from .upstream import fetch_upstream, remove_tree_or_link
from .secrets import SECRETS_ENV, SecretMask, gets_secrets, secrets_for
from .package import check_start_work, check_stop
from ..spool.delivery import emit
from ..errors import BadInput, TrivialCiError
from ..hub.state import HubState
from ..jobs import (MAX_REASON_CHARS, PARAM_NAME, RUNNING, STAGE_FIELDS, JobStatus, check_job_id, entry_name,
                    iso_now, seconds_between)
from ..git.mirror import Mirror
from ..store import StoreMissing, open_store

GRACE = 5.0
CANCEL_POLL = 0.1  # seconds between two looks for JOB.cancel while the build runs


class JobRun:
    def __init__(self, package: dict, worker: str, workdir: Path, spool, store_url: str | None,
                 kind: str | None = None):
        """BadInput when the package breaks a field's grammar, or is for another `kind` than this worker's."""
        self.package, self.worker = check_start_work(package, kind), check_node_name(worker)
        self.workdir, self.spool, self.store_url = Path(workdir), spool, store_url
        self.id = self.package["job"]
        self.worktree = under(self.workdir, "jobs", self.id)
        self.artifacts = under(self.workdir, "artifacts", self.id)
        self.upstream = under(self.workdir, "upstream", self.id)
        self.log_path = under(self.workdir, "logs", f"{self.id}.log")
        self.record: dict = {}
        self._build_log: BuildLog | None = None

    def is_stale(self) -> bool:
        """Whether the hub moved on (a later attempt, a final status, another worker).

        When the spool is out of reach the answer is no: the job goes on, and
        the hub, which has the last word, ignores reports of an attempt it gave up.
        """
        state = HubState(self.spool)
        job = state.job(self.id)
        if job is None and not os.path.isdir(state.root):  # False for an EIO too (Path.is_dir raises it)
            self._note(f"trivialci: cannot read the hub's state in {state.root} (is the spool's mount gone?); going on")
            return False
        return bool(job) and (job.get("attempt") != self.package["attempt"] or job.get("worker") != self.worker
                              or JobStatus(job["status"]) not in RUNNING)

    def run(self) -> dict:
        """Check out, build, upload, report; the job's record."""
        started = iso_now()
        try:
            self._check_out()
            self._report(JobStatus.BUILDING, started=started)
            exit_code, status, reason = self._stop_request() or self._build()
            if self.is_stale():
                self.record = {"status": "stale", "reason": "the hub gave this job to another attempt meanwhile"}
                self._end_log()
                self._clean_up()
                return self.record
        except Exception as error:  # a fetch or checkout that failed is this job's failure, not the worker's
            self._note(f"trivialci: {error}")
            exit_code, status, reason = None, JobStatus.FAILED, f"could not check out: {error}"
        self._end_log()
        self.record = self._make_record(started, exit_code, status, reason)
        self._upload()
        self._report_end()
        self._clean_up()
        return self.record

    def _check_out(self) -> None:
        self._log().forget_ended()  # an earlier attempt's log goes on
        mirror = Mirror(self.workdir, self.package["repo"])
        mirror.prune()
        if self.worktree.exists():
            mirror.remove_worktree(self.worktree)
        self.worktree.parent.mkdir(parents=True, exist_ok=True)
        mirror.add_worktree(self.package["sha"], self.worktree)  # fetches only when the mirror lacks the sha
        shutil.rmtree(self.artifacts, ignore_errors=True)
        self.artifacts.mkdir(parents=True)

    def _build(self) -> tuple[int | None, JobStatus, str]:
        script, problem = self._entry_point()
        problem = problem or fetch_upstream(self.package.get("upstream") or [], self.store_url, self.upstream)
        if problem:
            return None, JobStatus.FAILED, problem
        try:
            command, env, mask = self._sandboxed(script)
        except TrivialCiError as error:  # no working sandbox, a bad secrets file: the build cannot run as it must
            self._note(f"trivialci: {error}")
            return None, JobStatus.FAILED, str(error)
        except OSError as error:
            return self._cannot_run(error)
        read_end, write_end = os.pipe()
        try:
            build = subprocess.Popen(command, cwd=self.worktree, stdin=subprocess.DEVNULL, stdout=write_end,
                                     stderr=subprocess.STDOUT, env=env, start_new_session=True)
        except OSError as error:
            os.close(read_end)
            return self._cannot_run(error)
        finally:
            os.close(write_end)  # only the build holds it now: EOF comes when the build's group closes it
        copier = LogCopier(read_end, self._log(), max_bytes=limits.from_environment()[0], mask=mask).start()
        exit_code, timed_out = self._wait(build)
        if not copier.join(GRACE):  # a process the build left behind holds its output open: do not wait for it
            self._note("trivialci: the build ended, but a process it started still holds its output open")
        status, reason = self._judge(exit_code, timed_out)
        return exit_code, status, reason + copier.cut_note()

    def _cannot_run(self, error: OSError) -> tuple[None, JobStatus, str]:
        self._note(f"trivialci: cannot run .trivialci/{self.package['kind']}: {error}")
        return None, JobStatus.FAILED, f"cannot run .trivialci/{self.package['kind']}: {error.strerror} " \
                                       "(is its #! line right?)"

    def _sandboxed(self, script: Path) -> tuple[list[str], dict, SecretMask]:
        """The build's command in its sandbox (worker/sandbox.py), its environment, and its log's mask."""
        sandbox, secrets = Sandbox.from_environment(), self._secrets()
        command = sandbox.command([str(script)], self.worktree, writable=(self.worktree, self.artifacts),
                                  readable=(Mirror(self.workdir, self.package["repo"]).path, self.upstream))
        return command, self._environment(sandbox, secrets), SecretMask(secrets.values())

    def _secrets(self) -> dict[str, str]:
        """The secrets of this job's kind (worker/secrets.py); none for an untrusted job."""
        directory = os.environ.get(SECRETS_ENV)
        if not directory:
            return {}
        if not gets_secrets(self.package):
            self._note("trivialci: this job is not trusted (\"trusted\": false) and not approved with secrets: "
                       "it gets none")
            return {}
        return secrets_for(directory, self.package["kind"], self.package["repo"])

    def _entry_point(self) -> tuple[Path, str | None]:
        """.trivialci/KIND (NN-KIND in stage NN) in the worktree, and why it cannot be run (None: it can).

        KIND passed its grammar (one file name); the file it leads to must be in
        the checkout too: a committed symbolic link to /usr/bin/... is not an entry point.
        """
        kind = entry_name(under(self.worktree, ".trivialci"), self.package.get("stage", 0), self.package["kind"])
        script = under(self.worktree, ".trivialci", kind)
        if not os.path.realpath(script).startswith(os.path.realpath(self.worktree) + os.sep):
            return script, f".trivialci/{kind} leads outside the checkout (a symbolic link?): it is not run"
        if not script.is_file() or not os.access(script, os.X_OK):
            return script, f".trivialci/{kind} is missing or not executable"
        return script, None

    def _wait(self, build: subprocess.Popen) -> tuple[int, bool]:
        """Wait for the build, within its timeout, looking for a cancel request; (exit code, whether it timed out).

        Only here is the build's group signalled: `build` is this process's own
        child, not yet reaped, so its pid (its group's id) cannot be another's.
        """
        self._write_pid_record(build.pid)
        deadline = time.monotonic() + self.package["timeout"]
        while time.monotonic() < deadline:
            try:
                return build.wait(CANCEL_POLL), False
            except subprocess.TimeoutExpired:
                if self._cancel_request():
                    return _stop_group(build), False
        return _stop_group(build), True

    def _write_pid_record(self, pid: int) -> None:
        """{pid, start_ticks}: lets cancel_work tell that this very build runs (it never signals it)."""
        record = {"pid": pid, "start_ticks": processes.start_ticks(pid)}
        try:
            write_atomically(self._pid_file(), json.dumps(record).encode(), self._pid_file().parent, sync_dir=False)
        except OSError as error:  # the build runs and is stopped all the same; cancel_work only cannot say so
            self._note(f"trivialci: could not write {self._pid_file()}: {error}")

    def _log(self) -> BuildLog:
        """The job's log, opened once (at the first use) and kept: see buildlog.BuildLog."""
        if self._build_log is None:
            self._build_log = BuildLog(self.workdir, self.id)
        return self._build_log

    def _end_log(self) -> None:
        """Mark the log complete, for the log server (X-Log-Complete) and its followers."""
        try:
            self._log().mark_ended(iso_now() + "\n")
        except OSError as error:
            print(f"could not mark the log of {self.id} complete: {error}")

    def _stop_request(self) -> tuple[None, JobStatus, str] | None:
        """A cancel that came while the job was still being checked out: do not build at all."""
        request = self._cancel_request()
        return (None, *request) if request else None

    def _cancel_request(self) -> tuple[JobStatus, str] | None:
        """(status, reason) of WORKDIR/jobs/JOB.cancel if cancel_work wrote one; anything else there is no request."""
        request = _read_json(self._cancel_file())
        try:
            return check_stop(request.get("status"), request.get("reason")) if isinstance(request, dict) else None
        except BadInput:
            return None

    def _judge(self, exit_code: int, timed_out: bool) -> tuple[JobStatus, str]:
        request = self._cancel_request()
        if request:
            return request
        if timed_out:
            return JobStatus.FAILED, f"timed out after {self.package.get('timeout'):g} s"
        if exit_code == 0:
            return JobStatus.PASSED, "exit status 0"
        return JobStatus.FAILED, f"exit status {exit_code}" if exit_code > 0 else f"killed by signal {-exit_code}"

    def _environment(self, sandbox: Sandbox | None = None, secrets: dict | None = None) -> dict:
        """The sandbox's few variables of the worker, the secrets, then the job's own variables."""
        package = self.package
        env = {**(sandbox or Sandbox(None)).environment(), **(secrets or {}),
               "TRIVIALCI_JOB": self.id, "TRIVIALCI_BRANCH": package["branch"], "TRIVIALCI_SHA": package["sha"],
               "TRIVIALCI_KIND": package["kind"], "TRIVIALCI_REPO": package["repo"],
               "TRIVIALCI_ATTEMPT": str(package["attempt"]), "TRIVIALCI_ARTIFACTS": str(self.artifacts),
               "TRIVIALCI_UPSTREAM": str(self.upstream), "TRIVIALCI_STAGE": str(package.get("stage", 0)),
               "TRIVIALCI_PYTHON": sys.executable}
        for name, value in (package.get("params") or {}).items():
            if PARAM_NAME.match(name) and isinstance(value, (str, int, float, bool)):
                env[f"TRIVIALCI_PARAM_{name.upper()}"] = str(value)
        return env

    def _make_record(self, started: str, exit_code, status: JobStatus, reason: str) -> dict:
        package, ended = self.package, iso_now()
        return {"job": self.id, "repo": package["repo"], "branch": package["branch"], "sha": package["sha"],
                "kind": package["kind"], "status": status.value, "worker": self.worker,
                "attempt": package["attempt"], "queued": package.get("queued"), "started": started, "ended": ended,
                "queue_wait": seconds_between(package.get("queued"), started),
                "run_time": seconds_between(started, ended), "exit_code": exit_code, "reason": reason, "files": [],
                **{key: package[key] for key in (*STAGE_FIELDS, "subject", "author") if key in package}}

    def _upload(self) -> None:
        """files/ emptied, log.txt and files/ stored, job.json last; what the store refused makes the job
        UNSTORED (with the reason), never fatal to the worker."""
        if not self.store_url:
            return
        prefix = f"jobs/{self.id}"
        try:
            store = open_store(self.store_url)
            newer = self._newer_attempt_stored(store, prefix)
            if newer:
                self.record["reason"] += f"; not uploaded: attempt {newer} of this job is in the store already"
                return
            store.delete_tree(f"{prefix}/files/")  # a dead attempt's files are not this attempt's
            self._upload_output(store, prefix)
        except (TrivialCiError, OSError) as error:
            self._unstored(f"its log or files were not stored: {error}")
            store = None
        try:
            (store or open_store(self.store_url)).put_bytes(f"{prefix}/job.json",
                                                            (json.dumps(self.record, indent=2) + "\n").encode())
        except (TrivialCiError, OSError) as error:
            self._unstored(f"its record could not be written to {self.store_url}: {error}")

    def _unstored(self, problem: str) -> None:
        """The store refused part of the job: UNSTORED, the build's own status kept as "verdict"."""
        if self.record["status"] != JobStatus.UNSTORED:
            self.record["verdict"] = self.record["status"]
            self.record["status"] = JobStatus.UNSTORED.value
        self.record["reason"] += f"; {problem}"

    def _newer_attempt_stored(self, store, prefix: str) -> int | None:
        """A later attempt's record in the store (this attempt was given up while the hub was out of reach)."""
        try:
            stored = json.loads(store.get_bytes(f"{prefix}/job.json"))
        except (StoreMissing, ValueError):
            return None
        attempt = stored.get("attempt") if isinstance(stored, dict) else None
        return attempt if isinstance(attempt, int) and attempt > self.package["attempt"] else None

    def _upload_output(self, store, prefix: str) -> None:
        refusal = limits.artifacts_refusal(self.artifacts, limits.from_environment()[1])
        if refusal:
            self._note(f"trivialci: {refusal}")
            self.record["reason"] += f"; {refusal}"
        with self._log().reader() as log:
            store.put_file(f"{prefix}/log.txt", log)
        artifacts = None if refusal else self._open_artifacts()
        if artifacts is None:
            return
        try:
            self.record["files"] = [key[len(prefix) + len("/files/"):] for key in
                                    store.put_tree(f"{prefix}/files", artifacts)]
        finally:
            os.close(artifacts)

    def _open_artifacts(self) -> int | None:
        """WORKDIR/artifacts/JOB, reached from WORKDIR without a link; None (noted) when the build removed it
        or put a link or a file in its place."""
        workdir = os.open(self.workdir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            return open_directory_under(workdir, f"artifacts/{self.id}")
        except FileNotFoundError:
            return None
        except OSError as error:
            self.record["reason"] += (f"; its artifacts directory was replaced by a link or a file, so nothing "
                                      f"under it was stored ({error.strerror})")
            return None
        finally:
            os.close(workdir)

    def _report_end(self) -> None:
        """The job's end as the record says it, after the upload (UNSTORED, if the store refused it)."""
        record, status = self.record, JobStatus(self.record["status"])
        extra = {"verdict": record["verdict"]} if "verdict" in record else {}
        self._report(status, ended=record["ended"], exit_code=record["exit_code"], reason=record["reason"], **extra)
        emit("work_done", {"job": self.id, "worker": self.worker, "status": status.value}, to="hub", spool=self.spool)

    def _report(self, status: JobStatus, **fields) -> None:
        update = {"job": self.id, "status": status.value, "attempt": self.package["attempt"], "worker": self.worker}
        if fields.get("reason"):  # the hub refuses a longer one, and then would never hear that the job ended
            fields["reason"] = fields["reason"][:MAX_REASON_CHARS]
        emit("work_status", {**update, **fields}, to="hub", spool=self.spool)

    def _note(self, line: str) -> None:
        try:
            self._log().append((line.rstrip() + "\n").encode())
        except OSError as error:  # the job goes on, and ends with its reason, log or no log
            print(f"could not write to the log of {self.id}: {error}; {line.rstrip()}")

    def _clean_up(self) -> None:
        mirror = Mirror(self.workdir, self.package["repo"])
        try:
            mirror.remove_worktree(self.worktree)
        except Exception as error:  # e.g. the build pointed its .git elsewhere: git refuses it
            print(f"git could not remove the worktree {self.worktree}: {error}; removing it by hand")
            remove_tree_or_link(self.worktree)  # never follows a link the build left
            _quietly(mirror.prune, "could not prune the mirror (pruned at the next job)")
        remove_tree_or_link(self.artifacts)
        remove_tree_or_link(self.upstream)
        for leftover in (self._pid_file(), self._cancel_file()):
            remove_if_present(leftover)
        if self._build_log is not None:
            self._build_log.close()
            self._build_log = None

    def _pid_file(self) -> Path:
        return _job_file(self.workdir, self.id, "pid")

    def _cancel_file(self) -> Path:
        return _job_file(self.workdir, self.id, "cancel")


def stop(workdir: Path, job: str, status: str, reason: str) -> bool:
    """Ask a job to stop; whether its build is running now (it then stops within CANCEL_POLL s, KILL after GRACE).

    Writes WORKDIR/jobs/JOB.cancel {status, reason}: the start_work that runs
    the job reads it before building, and while its build runs, and stops the
    build itself. Nothing is signalled from here. BadInput for a bad job id,
    a status other than CANCELLED or SUPERSEDED, or a bad reason.
    """
    job = check_job_id(job)
    stop_status, reason = check_stop(status, reason)
    cancel_file = _job_file(workdir, job, "cancel")
    cancel_file.parent.mkdir(parents=True, exist_ok=True)
    request = json.dumps({"status": stop_status.value, "reason": reason}).encode()
    write_atomically(cancel_file, request, cancel_file.parent, sync_dir=False)
    return _build_running(_job_file(workdir, job, "pid"), job)


def _job_file(workdir, job: str, suffix: str) -> Path:
    return under(workdir, "jobs", f"{job}.{suffix}")


def _build_running(pid_file: Path, job: str) -> bool:
    """Whether the pid record names a live process that started when the record says, and carries the job's mark."""
    record = _read_json(pid_file)
    if not isinstance(record, dict) or type(record.get("pid")) is not int or record["pid"] <= 0:
        return False
    pid = record["pid"]
    return processes.start_ticks(pid) == record.get("start_ticks") and processes.carries(pid, f"TRIVIALCI_JOB={job}")


def _stop_group(build: subprocess.Popen) -> int:
    """TERM the build's group, KILL it after GRACE; its exit code. `build` is unreaped until it returns."""
    _signal_group(build.pid, signal.SIGTERM)
    try:
        return build.wait(GRACE)
    except subprocess.TimeoutExpired:
        _signal_group(build.pid, signal.SIGKILL)
        return build.wait()


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _quietly(action, failure: str) -> None:
    try:
        action()
    except Exception as error:
        print(f"{failure}: {error}")
def _read_json(path: Path):
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None

