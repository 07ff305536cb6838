"""Jobs as observed from the spool, with a cache for what can no longer change.

A job's state follows from the files in its directory (see :mod:`hpcgate.embedded.spool`):

- ``result.json``: finished, the state recorded there;
- ``started.json`` and the job lock held: RUNNING;
- ``started.json``, the lock free and still no result: the supervisor died without recording
  an outcome, the job becomes NODE_FAIL ("supervisor lost");
- otherwise PENDING (with ``launched`` set once dispatch spawned its supervisor).

Job documents never change and neither do results, so both are cached in ``cache.json``;
only unfinished jobs are looked at on disk, which keeps ``status`` fast with many jobs.
"""

from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass
from typing import Any

from hpcgate.embedded.procs import kill_group_if_same
from hpcgate.embedded.spool import Spool, read_json, try_lock, write_json

FINAL_STATES = frozenset({"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL"})
SUPERVISOR_LOST = "supervisor lost"
_CACHE_VERSION = 1


@dataclass
class Job:
    """One job: its submitted document and what is known about its execution."""

    spec: dict[str, Any]
    state: str = "PENDING"
    reason: str | None = None
    exit_code: int | None = None
    signal: int | None = None
    start_time: float | None = None
    end_time: float | None = None
    pid: int | None = None
    supervisor_pid: int | None = None
    launched: dict[str, Any] | None = None  # launched.json while PENDING, else None

    @property
    def id(self) -> str:
        """The job id."""
        return str(self.spec["id"])

    @property
    def final(self) -> bool:
        """Whether the job has ended (its outcome can no longer change)."""
        return self.state in FINAL_STATES

    def outcome(self) -> dict[str, Any]:
        """The execution fields, as stored in ``result.json``."""
        return {
            "state": self.state,
            "reason": self.reason,
            "exit_code": self.exit_code,
            "signal": self.signal,
            "start_time": self.start_time,
            "end_time": self.end_time,
            "pid": self.pid,
        }

    def record(self) -> dict[str, Any]:
        """The job as printed by ``status``."""
        spec = self.spec
        return {
            "id": self.id,
            "tag": spec["tag"],
            "name": spec["name"],
            "state": self.state,
            "reason": self.reason,
            "exit_code": self.exit_code,
            "signal": self.signal,
            "submit_time": spec["submit_time"],
            "start_time": self.start_time,
            "end_time": self.end_time,
            "workdir": spec["workdir"],
            "stdout": spec["stdout"],
            "stderr": spec["stderr"],
            "time_limit": spec["time_limit"],
            "dependencies": spec["dependencies"],
            "pid": self.pid,
        }


def from_outcome(spec: dict[str, Any], outcome: dict[str, Any]) -> Job:
    """A finished job from its ``result.json``."""
    return Job(
        spec,
        state=outcome["state"],
        reason=outcome.get("reason"),
        exit_code=outcome.get("exit_code"),
        signal=outcome.get("signal"),
        start_time=outcome.get("start_time"),
        end_time=outcome.get("end_time"),
        pid=outcome.get("pid"),
    )


def load_jobs(spool: Spool) -> list[Job]:
    """Every job in id order, dead supervisors turned into NODE_FAIL on the way.

    Call it holding the spool lock: it rewrites the cache.
    """
    cache = _Cache(spool)
    jobs = [job for job in map(cache.job, spool.job_ids()) if job is not None]
    cache.save({job.id for job in jobs})
    return jobs


class _Cache:
    """``cache.json``: job documents and finished outcomes, which never change once written.

    It is derived data: a missing, stale or damaged copy is simply rebuilt from the jobs.
    """

    def __init__(self, spool: Spool) -> None:
        self.spool = spool
        try:
            document = read_json(spool.path("cache.json")) or {}
        except ValueError:
            document = {}
        if document.get("version") != _CACHE_VERSION:
            document = {}
        self.specs: dict[str, Any] = document.get("specs", {})
        self.results: dict[str, Any] = document.get("results", {})
        self.changed = False

    def job(self, job_id: str) -> Job | None:
        """The job ``job_id``: from the cache if it has ended, else observed on disk."""
        spec = self.specs.get(job_id)
        if spec is None:
            spec = read_json(self.spool.job_file(job_id, "job.json"))
            if spec is None:
                return None  # not a complete job directory
            self.specs[job_id], self.changed = spec, True
        if job_id in self.results:
            return from_outcome(spec, self.results[job_id])
        job = observe(self.spool, spec)
        if job.final:
            self.results[job_id], self.changed = job.outcome(), True
        return job

    def save(self, live: set[str]) -> None:
        """Write the cache if it learnt something, keeping only jobs still in the spool."""
        if not self.changed:
            return
        document = {
            "version": _CACHE_VERSION,
            "specs": {k: v for k, v in self.specs.items() if k in live},
            "results": {k: v for k, v in self.results.items() if k in live},
        }
        write_json(self.spool.path("cache.json"), document)


def observe(spool: Spool, spec: dict[str, Any]) -> Job:
    """The current state of one job, read from its directory."""
    job_id = str(spec["id"])
    names = set(os.listdir(spool.job_dir(job_id)))
    if "result.json" in names:
        return from_outcome(spec, read_json(spool.job_file(job_id, "result.json")))
    if "started.json" in names:
        return _running_or_lost(spool, spec, read_json(spool.job_file(job_id, "started.json")))
    launched = (
        read_json(spool.job_file(job_id, "launched.json")) if "launched.json" in names else None
    )
    return Job(spec, launched=launched)


def _running_or_lost(spool: Spool, spec: dict[str, Any], started: dict[str, Any]) -> Job:
    job_id = str(spec["id"])
    lock = try_lock(spool.job_file(job_id, "lock"))
    if lock is None:  # the supervisor holds it: alive
        return Job(
            spec,
            state="RUNNING",
            start_time=started["start_time"],
            pid=started.get("pid"),
            supervisor_pid=started["supervisor_pid"],
        )
    try:
        # The supervisor may have recorded its result and exited since the directory listing.
        outcome = read_json(spool.job_file(job_id, "result.json"))
        if outcome is None:
            outcome = _lost(started)
            write_json(spool.job_file(job_id, "result.json"), outcome)
        return from_outcome(spec, outcome)
    finally:
        os.close(lock)


def _lost(started: dict[str, Any]) -> dict[str, Any]:
    # Nobody supervises the job's processes any more: end them rather than leave strays.
    kill_group_if_same(started.get("pid"), started.get("pid_start"), signal.SIGKILL)
    return Job(
        {},
        state="NODE_FAIL",
        reason=SUPERVISOR_LOST,
        start_time=started["start_time"],
        end_time=time.time(),
        pid=started.get("pid"),
    ).outcome()
