"""The per-job supervisor (``run ID``), started detached by dispatch.

It holds the job's lock for its whole life and refuses a job that already has a ``started``
record, so a job never runs twice. It runs the script in a process group of its own,
enforces the time limit, turns SIGTERM (``cancel``) into the end of the whole group, records
the outcome atomically, and finally dispatches so the next queued job starts by itself.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

from hpcgate.embedded.dispatch import dispatch
from hpcgate.embedded.errors import UnknownJob, UserError
from hpcgate.embedded.identity import (
    RunAs,
    acting_as,
    as_account,
    identity_variables,
    parse_run_as,
)
from hpcgate.embedded.jobs import Job
from hpcgate.embedded.procs import base_environment, start_ticks
from hpcgate.embedded.spool import Spool, load_config, read_json, try_lock, write_json

_CANCEL_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
_MAX_NAP = 60.0  # wake up now and then even if no signal arrives (belt and braces)


class _JobFailure(Exception):
    """The script could not be started; the message becomes the job's reason."""


class Waker:
    """Signal handling for the supervisor's wait loop.

    SIGTERM, SIGINT and SIGHUP mean "cancel"; SIGCHLD means "the script may have exited".
    Both wake :meth:`nap` through a self-pipe, so no signal is lost between a check and a
    wait. Python handlers are reset by exec, so the job starts with default signal actions.
    """

    def __init__(self) -> None:
        self.cancelled = False
        self._read, write = os.pipe()
        os.set_blocking(self._read, False)
        os.set_blocking(write, False)
        signal.set_wakeup_fd(write)
        for signum in _CANCEL_SIGNALS:
            signal.signal(signum, self._cancel)
        signal.signal(signal.SIGCHLD, self._child)

    def _cancel(self, signum: int, frame: FrameType | None) -> None:
        self.cancelled = True

    def _child(self, signum: int, frame: FrameType | None) -> None:
        """Nothing to do: installing a handler is what makes SIGCHLD wake the pipe."""

    def nap(self, seconds: float) -> None:
        """Sleep up to ``seconds``, less if a signal arrives."""
        select.select([self._read], [], [], max(0.0, min(seconds, _MAX_NAP)))
        while True:
            try:
                if not os.read(self._read, 512):
                    return
            except BlockingIOError:
                return


def supervise(spool: Spool, job_id: str) -> Job | None:
    """Run job ``job_id`` to its end unless another supervisor has it; then dispatch."""
    spec = read_json(spool.job_file(job_id, "job.json")) if job_id.isdigit() else None
    if spec is None:
        raise UnknownJob
    os.chdir("/")  # hold no directory busy for the job's lifetime (the job gets its own)
    lock = try_lock(spool.job_file(job_id, "lock"))
    if lock is None:
        return None  # another supervisor holds the job
    try:
        job = _run_locked(spool, spec)
    finally:
        os.close(lock)  # after the result is on disk: status never sees a gap
    dispatch(spool)
    return job


def _run_locked(spool: Spool, spec: dict[str, Any]) -> Job | None:
    job_id = str(spec["id"])
    names = set(os.listdir(spool.job_dir(job_id)))
    if "started.json" in names or "result.json" in names:
        return None  # already run (or cancelled) once: never run a job twice
    if "launched.json" not in names:
        raise UserError(f"job {job_id} was not dispatched")
    waker = Waker()  # before "started": a cancel's SIGTERM must find the handler
    job = Job(spec, supervisor_pid=os.getpid())
    if not _cancel_requested(spool, job_id):
        job.start_time = time.time()
        _write_started(spool, job, None)
        waker.cancelled = waker.cancelled or _cancel_requested(spool, job_id)
        _execute(spool, job, waker)
    if job.state == "PENDING":
        job.state = "CANCELLED"  # cancelled before the script was started
    job.end_time = time.time()
    write_json(spool.job_file(job_id, "result.json"), job.outcome())
    return job


def _cancel_requested(spool: Spool, job_id: str) -> bool:
    return os.path.exists(spool.job_file(job_id, "cancel"))


def _write_started(spool: Spool, job: Job, ticks: int | None) -> None:
    started = {
        "supervisor_pid": job.supervisor_pid,
        "start_time": job.start_time,
        "pid": job.pid,
        "pid_start": ticks,
    }
    write_json(spool.job_file(job.id, "started.json"), started)


def _execute(spool: Spool, job: Job, waker: Waker) -> None:
    """Run the script unless cancelled already; set the job's state from how it ended."""
    if waker.cancelled:
        return
    try:
        process = _start(spool, job)
    except _JobFailure as exc:
        job.state, job.reason = "FAILED", str(exc)
        return
    job.pid = process.pid
    _write_started(spool, job, start_ticks(process.pid))
    cause = _watch(process, job.spec["time_limit"], load_config(spool).kill_wait, waker)
    _set_outcome(job, cause, process.returncode)


def _set_outcome(job: Job, cause: str | None, returncode: int) -> None:
    if returncode < 0:
        job.signal = -returncode  # killed by that signal
    else:
        job.exit_code = returncode
    job.state = cause or ("COMPLETED" if returncode == 0 else "FAILED")


def _start(spool: Spool, job: Job) -> subprocess.Popen[bytes]:
    spec = job.spec
    run_as = parse_run_as(spec.get("run_as"))
    with acting_as(run_as):  # the outputs are the account's, opened with its permissions
        stdout, stderr = _open_outputs(spec)
    try:
        with acting_as(run_as):  # a directory the account may enter
            _enter(spec["workdir"])
        return _spawn(spool, job, run_as, stdout, stderr)  # as root, which may drop to it
    finally:
        _close(stdout, stderr)
        os.chdir("/")  # hold no directory busy (see supervise)


def _spawn(
    spool: Spool, job: Job, run_as: RunAs | None, stdout: int, stderr: int
) -> subprocess.Popen[bytes]:
    """Start the script as ``run_as`` in the current directory, in a process group of its
    own (signals reach all its processes)."""
    with _script(spool, job.id, run_as) as (path, fds):
        try:
            return subprocess.Popen(
                [path],
                env=job_environment(job.spec, run_as),
                stdin=subprocess.DEVNULL,
                stdout=stdout,
                stderr=stderr,
                pass_fds=fds,
                process_group=0,
                **as_account(run_as),
            )
        except OSError as exc:
            raise _JobFailure(f"cannot start the script: {_describe(exc)}") from None


@contextmanager
def _script(
    spool: Spool, job_id: str, run_as: RunAs | None
) -> Iterator[tuple[str, tuple[int, ...]]]:
    """The path to execute the script by, and the descriptors the job needs for it.

    Another account cannot read the spool (root's, 0700): it gets the script as an
    anonymous in-memory file of its own, executed through its descriptor.
    """
    path = spool.job_file(job_id, "script")
    if as_account(run_as) == {}:
        yield path, ()
        return
    fd = os.memfd_create(f"hpcgate-job-{job_id}")
    try:
        with open(path, "rb") as stream:
            os.write(fd, stream.read())
        yield f"/proc/self/fd/{fd}", (fd,)
    finally:
        os.close(fd)


def _open_outputs(spec: dict[str, Any]) -> tuple[int, int]:
    stdout = _open_output(spec["stdout"], "stdout")
    if spec["stderr"] == spec["stdout"]:
        return stdout, stdout
    try:
        return stdout, _open_output(spec["stderr"], "stderr")
    except _JobFailure:
        os.close(stdout)
        raise


def _close(stdout: int, stderr: int) -> None:
    os.close(stdout)
    if stderr != stdout:
        os.close(stderr)


def _enter(workdir: str) -> None:
    try:
        os.chdir(workdir)
    except OSError as exc:
        raise _JobFailure(f"cannot enter the working directory: {_describe(exc)}") from None


def _open_output(path: str, which: str) -> int:
    try:
        return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    except OSError as exc:
        raise _JobFailure(f"cannot open the {which} file: {_describe(exc)}") from None


def _describe(exc: OSError) -> str:
    return f"{exc.strerror}: {exc.filename}" if exc.filename else str(exc.strerror or exc)


def job_environment(spec: dict[str, Any], run_as: RunAs | None = None) -> dict[str, str]:
    """A clean base environment (who the job runs as: USER, LOGNAME, HOME), the job's own
    variables, and HPCGATE_JOB_*."""
    environment = base_environment(os.environ)
    if run_as is not None:
        environment.update(identity_variables(run_as))
    environment.update(spec["env"])
    environment["HPCGATE_JOB_ID"] = str(spec["id"])
    environment["HPCGATE_JOB_NAME"] = spec["name"]
    environment["HPCGATE_SUBMIT_DIR"] = spec["submit_dir"]
    return environment


def _watch(
    process: subprocess.Popen[bytes], time_limit: int | None, kill_wait: float, waker: Waker
) -> str | None:
    """Wait for the script; return "CANCELLED" or "TIMEOUT" if we had to end it."""
    deadline = None if time_limit is None else time.monotonic() + time_limit
    cause = _wait_for_end(process, deadline, waker)
    if cause is not None:
        _terminate(process, kill_wait, waker)
    # Like Slurm ending a job's steps: whatever the script left behind goes too.
    _signal_group(process.pid, signal.SIGKILL)
    process.wait()
    return cause


def _wait_for_end(
    process: subprocess.Popen[bytes], deadline: float | None, waker: Waker
) -> str | None:
    while not _exited(process):
        if waker.cancelled:
            return "CANCELLED"
        remaining = _MAX_NAP if deadline is None else deadline - time.monotonic()
        if remaining <= 0:
            return "TIMEOUT"
        waker.nap(remaining)
    return None


def _terminate(process: subprocess.Popen[bytes], kill_wait: float, waker: Waker) -> None:
    """SIGTERM to the job's group, SIGKILL if its main process outlives ``kill_wait``."""
    _signal_group(process.pid, signal.SIGTERM)
    give_up = time.monotonic() + kill_wait
    while not _exited(process):
        remaining = give_up - time.monotonic()
        if remaining <= 0:
            _signal_group(process.pid, signal.SIGKILL)
            return
        waker.nap(remaining)


def _exited(process: subprocess.Popen[bytes]) -> bool:
    """Whether the script's main process has exited, without reaping it if possible.

    An unreaped main process keeps its pid, so its process group id cannot be reused
    before we signal the group a last time.
    """
    if not hasattr(os, "waitid"):
        return process.poll() is not None
    try:
        flags = os.WEXITED | os.WNOHANG | os.WNOWAIT
        return os.waitid(os.P_PID, process.pid, flags) is not None
    except ChildProcessError:
        return True


def _signal_group(pgid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):  # nothing left in the group
        os.killpg(pgid, signum)
