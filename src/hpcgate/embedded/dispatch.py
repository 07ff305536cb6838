"""Dispatch: start queued jobs under the concurrency limit once their dependencies are met.

Submit, status and every supervisor (when its job ends) run dispatch, so queued jobs start
without any caller staying around. Under the spool lock it marks a job ``launched`` before
spawning its supervisor, so a job is launched once even when dispatches race; the supervisor's
job lock and ``started`` record make even a repeated launch harmless.
"""

from __future__ import annotations

import os
import signal
import sys
import time

from hpcgate.embedded.deps import Verdict, verdict
from hpcgate.embedded.jobs import Job, load_jobs
from hpcgate.embedded.procs import base_environment
from hpcgate.embedded.spool import Spool, load_config, spool_lock, try_lock, write_json

# A supervisor that has not taken its job this long after being spawned is presumed dead
# (e.g. the dispatching process was killed between marking and spawning): spawn another.
LAUNCH_GRACE = 15.0
LAUNCH_ATTEMPTS = 3
_PENDING_REASONS = {Verdict.NEVER: "DependencyNeverSatisfied", Verdict.WAIT: "Dependency"}
# Signals reset to their default action in the supervisor, whatever its spawner ignored.
_DEFAULT_SIGNALS = (
    signal.SIGHUP, signal.SIGINT, signal.SIGQUIT, signal.SIGTERM, signal.SIGCHLD,
    signal.SIGUSR1, signal.SIGUSR2, signal.SIGALRM, signal.SIGPIPE,
)  # fmt: skip


def dispatch(spool: Spool) -> list[Job]:
    """Start what can start; return every job with its state and, if PENDING, its reason."""
    slots = load_config(spool).slots
    with spool_lock(spool):
        jobs = load_jobs(spool)
        by_id = {job.id: job for job in jobs}
        busy = sum(1 for job in jobs if job.state == "RUNNING" or job.launched is not None)
        for job in jobs:
            if job.state != "PENDING":
                continue
            if job.launched is not None:
                _revive(spool, job)
                continue
            job.reason = _blocker(job, by_id, busy < slots)
            if job.reason is None:
                _launch(spool, job, attempt=1)
                busy += 1
    return jobs


def _blocker(job: Job, jobs: dict[str, Job], free_slot: bool) -> str | None:
    """Why ``job`` cannot start now, as a Slurm pending reason; None if it can."""
    outcome = verdict(job.spec["dependencies"], jobs)
    if outcome is not Verdict.MET:
        return _PENDING_REASONS[outcome]
    return None if free_slot else "Resources"


def _launch(spool: Spool, job: Job, attempt: int) -> None:
    job.launched = {"time": time.time(), "attempts": attempt}
    job.reason = None
    write_json(spool.job_file(job.id, "launched.json"), job.launched)
    try:
        spawn_supervisor(spool, job.id)
    except OSError as exc:
        _give_up(spool, job, f"cannot start the supervisor: {exc}")


def _revive(spool: Spool, job: Job) -> None:
    """Spawn a new supervisor for a job whose supervisor never came up."""
    assert job.launched is not None
    if time.time() - float(job.launched["time"]) < LAUNCH_GRACE:
        return
    attempts = int(job.launched["attempts"])
    if attempts >= LAUNCH_ATTEMPTS:
        _give_up(spool, job, "the supervisor failed to start")
        return
    lock = try_lock(spool.job_file(job.id, "lock"))
    if lock is not None:  # nobody supervises it (a live supervisor holds the lock)
        os.close(lock)
        _launch(spool, job, attempts + 1)


def _give_up(spool: Spool, job: Job, reason: str) -> None:
    """Record NODE_FAIL for a launched job that no supervisor took."""
    lock = try_lock(spool.job_file(job.id, "lock"))
    if lock is None:
        return  # a supervisor is taking the job after all
    try:
        names = os.listdir(spool.job_dir(job.id))
        if "result.json" in names or "started.json" in names:
            return
        job.state, job.reason, job.end_time, job.launched = "NODE_FAIL", reason, time.time(), None
        write_json(spool.job_file(job.id, "result.json"), job.outcome())
    finally:
        os.close(lock)


def spawn_supervisor(spool: Spool, job_id: str) -> None:
    """Start ``run JOB_ID`` detached: new session, no stdin, output to the job's log.

    The spawning process does not wait for it; when that process exits, the supervisor is
    re-parented and lives on. Its environment is the clean base plus PYTHONPATH naming the
    directory this ``hpcgate`` package was loaded from, so it runs the same code.
    """
    argv = [sys.executable, "-m", "hpcgate.embedded", "--spool", spool.root, "run", job_id]
    environment = base_environment(os.environ)
    environment["PYTHONPATH"] = _package_parent()
    log = spool.job_file(job_id, "supervisor.log")
    actions = [
        (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
        (os.POSIX_SPAWN_OPEN, 1, log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600),
        (os.POSIX_SPAWN_DUP2, 1, 2),
    ]
    os.posix_spawn(
        sys.executable,
        argv,
        environment,
        file_actions=actions,
        setsid=True,
        setsigmask=(),
        setsigdef=_DEFAULT_SIGNALS,
    )


def _package_parent() -> str:
    package = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    return os.path.dirname(package)
