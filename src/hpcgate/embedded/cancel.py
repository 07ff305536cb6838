"""``cancel``: end pending and running jobs.

A pending job is marked CANCELLED under the spool lock (and its job lock), so dispatch can
never start it. For a running job, the request is written to the spool and the supervisor
is sent SIGTERM: it ends the job's process group and records CANCELLED itself. A supervisor
that is just starting checks the request after its ``started`` record, so no cancel is lost.
"""

from __future__ import annotations

import os
import signal
import time

from hpcgate.embedded.errors import UnknownJob
from hpcgate.embedded.jobs import Job, load_jobs
from hpcgate.embedded.procs import kill_group_if_same, signal_process
from hpcgate.embedded.spool import Spool, read_json, spool_lock, try_lock, write_bytes, write_json


def cancel(spool: Spool, job_ids: list[str]) -> list[str]:
    """Cancel the jobs ``job_ids``; return those that were pending or running.

    Raises :class:`UnknownJob` (and cancels nothing) if any id is not in the spool.
    """
    with spool_lock(spool):
        jobs = {job.id: job for job in load_jobs(spool)}
        if any(job_id not in jobs for job_id in job_ids):
            raise UnknownJob
        wanted = dict.fromkeys(job_ids)  # each job once, in the order given
        return [job_id for job_id in wanted if _cancel_one(spool, jobs[job_id])]


def _cancel_one(spool: Spool, job: Job) -> bool:
    if job.final:
        return False
    write_bytes(spool.job_file(job.id, "cancel"), str(time.time()).encode())
    if job.state == "RUNNING":
        _signal_supervisor(spool, job.id)
        return True
    lock = try_lock(spool.job_file(job.id, "lock"))
    if lock is None:
        # A supervisor is taking the job: it sees the request, or it has written its
        # "started" record already and then it gets the signal.
        _signal_supervisor(spool, job.id)
        return True
    try:
        return _cancel_unsupervised(spool, job)
    finally:
        os.close(lock)


def _cancel_unsupervised(spool: Spool, job: Job) -> bool:
    """Record CANCELLED for a job nobody supervises (we hold its lock)."""
    names = os.listdir(spool.job_dir(job.id))
    if "result.json" in names:
        return False
    started = read_json(spool.job_file(job.id, "started.json")) or {}
    # Its supervisor died a moment ago: end what it left running.
    kill_group_if_same(started.get("pid"), started.get("pid_start"), signal.SIGKILL)
    job.state, job.reason = "CANCELLED", None
    job.start_time, job.end_time = started.get("start_time"), time.time()
    write_json(spool.job_file(job.id, "result.json"), job.outcome())
    return True


def _signal_supervisor(spool: Spool, job_id: str) -> bool:
    started = read_json(spool.job_file(job_id, "started.json"))
    return started is not None and signal_process(int(started["supervisor_pid"]))
