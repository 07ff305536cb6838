"""Adapter for PBS Professional and OpenPBS: qsub, qstat and qdel (queues, nodes and
reservations are :mod:`hpcgate.schedulers.pbs_info`).

Tested on recorded outputs only, not yet against a live PBS server. The recordings in
``tests/unit/recorded/pbs`` are reconstructed from the OpenPBS sources and manuals (PBS
Pro 2021+ and OpenPBS 23 share that code), not captured from a running server.

Pure: argv builders and parsers, with PBS's knowledge kept as data (the state letters, the
``JOB_EXEC_*`` exit statuses, the messages that mean "the server cannot be reached").
``qstat -x`` lists finished jobs too, so no separate history query is needed; a job PBS
no longer knows (history disabled or expired) is simply not reported. ``qstat -t`` adds an
array's subjobs (``4300[1].server``, reported with the array's id ``4300[].server``).

How a spec becomes ``qsub`` options: :mod:`hpcgate.schedulers.pbs_submit`.

``qdel`` of a job that has finished, is exiting or is unknown to the server succeeds:
nothing is left to cancel.

Exit statuses (the job's ``Exit_status``): 0-255 is the job script's own exit code (128+N
is the shell's way of saying a child died of signal N; it is kept as an exit code). Above
256 the top shell itself was killed by signal ``Exit_status - 256`` (271 is SIGTERM, as
``qdel`` sends). Negative values are PBS's own ``JOB_EXEC_*`` codes: -29 walltime exceeded
is TIMEOUT, -27/-26 mem/vmem exceeded are OUT_OF_MEMORY, lost hosts are NODE_FAIL. A
finished job in substate 91 (terminated) was deleted: CANCELLED.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from hpcgate.model.commands import Command, CommandResult
from hpcgate.model.errors import SchedulerUnavailable
from hpcgate.model.jobs import JobSpec, JobState
from hpcgate.model.scheduler import SchedulerJob, SubmitContext
from hpcgate.schedulers.base import Scheduler
from hpcgate.schedulers.pbs_format import (
    as_int,
    as_mapping,
    as_text,
    parse_duration,
    raise_for,
    raise_message,
    read_json,
    time_of,
)
from hpcgate.schedulers.pbs_info import PbsInfo
from hpcgate.schedulers.pbs_submit import TAG_VARIABLE, qsub_options, variable_list

#: Job state letters of jobs that are still live; F and X (finished) are read from the
#: exit status instead. M (moved to another server) is not an end: the job goes on there.
STATES: dict[str, JobState] = {
    "Q": JobState.PENDING,
    "H": JobState.PENDING,
    "W": JobState.PENDING,
    "T": JobState.PENDING,
    "M": JobState.PENDING,
    "R": JobState.RUNNING,
    "E": JobState.RUNNING,
    "B": JobState.RUNNING,
    "S": JobState.SUSPENDED,
    "U": JobState.SUSPENDED,
}
FINISHED = frozenset({"F", "X"})
#: Why a job waits, by substate, for when the scheduler left no comment.
WAITING: dict[int, str] = {
    20: "held by its owner, an operator or the server",
    22: "waiting for the jobs it depends on",
    30: "waiting for the start time it was given",
    37: "held: staging in its files failed",
    94: "moved to another PBS server",
}
TERMINATED = 91  # the substate of a finished job that was deleted (qdel, or by the server)
SIGNAL_BASE = 256

#: PBS's own negative exit statuses (``JOB_EXEC_*`` in OpenPBS's job.h).
EXEC_CODES: dict[int, tuple[JobState, str]] = {
    -1: (JobState.FAILED, "the job could not start (JOB_EXEC_FAIL1)"),
    -2: (JobState.FAILED, "the job could not start (JOB_EXEC_FAIL2)"),
    -3: (JobState.FAILED, "the job could not start on its host (JOB_EXEC_RETRY)"),
    -4: (JobState.NODE_FAIL, "the execution host's MoM restarted (JOB_EXEC_INITABT)"),
    -5: (JobState.NODE_FAIL, "the execution host's MoM restarted (JOB_EXEC_INITRST)"),
    -6: (JobState.NODE_FAIL, "the execution host's MoM restarted (JOB_EXEC_INITRMG)"),
    -7: (JobState.FAILED, "restart from a checkpoint failed (JOB_EXEC_BADRESRT)"),
    -10: (JobState.FAILED, "invalid user or group on the host (JOB_EXEC_FAILUID)"),
    -13: (JobState.FAILED, "bad password for the job's user (JOB_EXEC_FAIL_PASSWORD)"),
    -16: (JobState.FAILED, "an execution hook rejected the job (JOB_EXEC_FAILHOOK_RERUN)"),
    -17: (JobState.FAILED, "an execution hook rejected the job (JOB_EXEC_FAILHOOK_DELETE)"),
    -19: (JobState.FAILED, "a hook deleted the job (JOB_EXEC_HOOK_DELETE)"),
    -20: (JobState.NODE_FAIL, "lost contact with the primary host (JOB_EXEC_RERUN_MS_FAIL)"),
    -21: (JobState.FAILED, "security check of the PBS directory failed (JOB_EXEC_FAIL_SECURITY)"),
    -22: (JobState.FAILED, "a hook failed or timed out (JOB_EXEC_HOOKERROR)"),
    -23: (JobState.FAILED, "no Kerberos credentials (JOB_EXEC_FAIL_KRB5)"),
    -24: (JobState.FAILED, "ncpus limit exceeded (JOB_EXEC_KILL_NCPUS_BURST)"),
    -25: (JobState.FAILED, "ncpus limit exceeded (JOB_EXEC_KILL_NCPUS_SUM)"),
    -26: (JobState.OUT_OF_MEMORY, "vmem limit exceeded (JOB_EXEC_KILL_VMEM)"),
    -27: (JobState.OUT_OF_MEMORY, "mem limit exceeded (JOB_EXEC_KILL_MEM)"),
    -28: (JobState.FAILED, "cput limit exceeded (JOB_EXEC_KILL_CPUT)"),
    -29: (JobState.TIMEOUT, "walltime limit exceeded (JOB_EXEC_KILL_WALLTIME)"),
    -30: (JobState.NODE_FAIL, "a sister host could not join the job (JOB_EXEC_JOINJOB)"),
}

UNKNOWN_JOB = "Unknown Job Id"
# qdel's answers for a job that is already over: there is nothing left to cancel.
NOTHING_TO_CANCEL = (UNKNOWN_JOB, "has finished", "Request invalid for state of job")
HEALTHY_SERVER = frozenset({"Active", "Idle", "Scheduling"})

_JOB_ID = re.compile(r"^\d+(\[\d*\])?(\.[A-Za-z0-9_.-]+)?$")


class PbsScheduler(Scheduler):
    """PBS Professional (2021 and newer) and OpenPBS (20 and newer) through their commands."""

    kind = "pbs"
    info = PbsInfo()
    # Named one by one, so a field added to JobSpec later is refused until mapped here.
    dependency_directive = re.compile(r"^#PBS\b.*\bdepend=", re.MULTILINE)
    supported_fields = frozenset(
        {
            "script",
            "script_path",
            "name",
            "environment",
            "time_limit",
            "partition",
            "account",
            "nodes",
            "ntasks",
            "cpus_per_task",
            "memory",
            "gpus",
            "stdout",
            "stderr",
            "array",
            "dependencies",
        }
    )

    def check(self, spec: JobSpec) -> None:
        """Also refuse values PBS cannot take, before anything is recorded."""
        super().check(spec)
        qsub_options(spec)
        variable_list("", spec.environment)

    def submit_command(self, spec: JobSpec, context: SubmitContext) -> Command:
        variables = variable_list(context.tag, spec.environment)
        argv = ["qsub", *qsub_options(spec), "-v", variables]
        if spec.script_path is not None:
            # qsub reads "--" as "an executable follows", so a path cannot hide behind it
            path = spec.script_path
            argv.append(f"./{path}" if path.startswith("-") else path)
        stdin = spec.script.encode() if spec.script is not None else None
        return Command(tuple(argv), stdin, env={})

    def parse_submit(self, result: CommandResult) -> str:
        raise_for(result)
        words = result.stdout.decode(errors="replace").split()
        if not words or not _JOB_ID.match(words[-1]):
            raise SchedulerUnavailable(f"qsub printed no job id: {result.error_text()}")
        return words[-1]

    def ping_command(self) -> Command | None:
        return Command(("qstat", "-B", "-f", "-F", "json"))

    def parse_ping(self, result: CommandResult) -> None:
        if not result.ok:
            raise SchedulerUnavailable(f"the PBS server is not answering: {result.error_text()}")
        servers = as_mapping(read_json(result.stdout, "qstat -B").get("Server"))
        states = [str(as_mapping(s).get("server_state", "stateless")) for s in servers.values()]
        if not any(state in HEALTHY_SERVER for state in states):
            raise SchedulerUnavailable(f"the PBS server is {', '.join(states) or 'not listed'}")

    def status_command(self, native_ids: Sequence[str]) -> Command:
        # -x: finished jobs too; -t: an array's subjobs as well as the array
        return Command(("qstat", "-f", "-F", "json", "-x", "-t", *native_ids))

    def parse_status(self, result: CommandResult) -> list[SchedulerJob]:
        if not result.ok:  # each unknown id has a line of its own; any other is a failure
            complaints = _lines(result.stderr)
            trouble = [line for line in complaints if UNKNOWN_JOB not in line]
            if trouble or not complaints:
                raise_message("\n".join(trouble) or result.error_text())
        if not result.stdout.strip():
            return []
        jobs = as_mapping(read_json(result.stdout, "qstat").get("Jobs"))
        return [job_of(native_id, as_mapping(attrs)) for native_id, attrs in jobs.items()]

    def cancel_command(self, native_id: str) -> Command:
        return Command(("qdel", native_id))

    def parse_cancel(self, result: CommandResult) -> None:
        if result.ok or any(text in result.error_text() for text in NOTHING_TO_CANCEL):
            return  # already finished, exiting or forgotten: nothing is left to cancel
        raise_for(result)


# --- status ---------------------------------------------------------------------------


def job_of(native_id: str, attrs: Mapping[str, Any]) -> SchedulerJob:
    """One job (or array, or subjob) of ``qstat -f -F json``."""
    state, reason, exit_code, signal = outcome(attrs)
    variables = variables_of(attrs.get("Variable_List"))
    return SchedulerJob(
        native_id=native_id,
        state=state,
        reason=reason,
        exit_code=exit_code,
        signal=signal,
        name=as_text(attrs.get("Job_Name")),
        submit_time=time_of(attrs.get("ctime")),
        start_time=time_of(attrs.get("stime")),
        end_time=time_of(attrs.get("obittime") or attrs.get("mtime")) if state.terminal else None,
        working_directory=as_text(attrs.get("jobdir")),
        stdout=path_of(attrs.get("Output_Path")),
        stderr=path_of(attrs.get("Error_Path")),
        time_limit=parse_duration(as_mapping(attrs.get("Resource_List")).get("walltime")),
        node_list=exec_hosts(attrs.get("exec_host")),
        tag=variables.get(TAG_VARIABLE),
        array_job_id=as_text(attrs.get("array_id")),
    )


def exec_hosts(value: object) -> str | None:
    """The host names of ``exec_host`` (``node01/0*2+node02/1``), in order, once each."""
    text = as_text(value)
    if not text:
        return None
    names = [chunk.split("/", 1)[0] for chunk in text.split("+") if chunk]
    return ",".join(dict.fromkeys(names)) or None


def outcome(attrs: Mapping[str, Any]) -> tuple[JobState, str | None, int | None, int | None]:
    """(state, reason, exit code, signal) from the state letter and, once finished, the
    exit status and substate."""
    letter = str(attrs.get("job_state", ""))
    comment = as_text(attrs.get("comment"))
    if letter in FINISHED:
        return ended(as_int(attrs.get("Exit_status")), as_int(attrs.get("substate")), comment)
    state = STATES.get(letter, JobState.PENDING)
    if state is JobState.RUNNING:
        return state, None, None, None  # its comment only says where it started
    substate = as_int(attrs.get("substate"))
    return state, comment or WAITING.get(substate or 0), None, None


def ended(
    status: int | None, substate: int | None, comment: str | None
) -> tuple[JobState, str | None, int | None, int | None]:
    """How a finished job ended, from its ``Exit_status`` and substate."""
    signal = status - SIGNAL_BASE if status is not None and status > SIGNAL_BASE else None
    if status in EXEC_CODES:
        state, text = EXEC_CODES[status]
        return state, text, None, None
    if substate == TERMINATED:
        return JobState.CANCELLED, comment, None, signal
    if status is None:
        return JobState.FAILED, comment or "the job ended without an exit status", None, None
    if signal is not None:
        return JobState.FAILED, comment, None, signal
    if status < 0:
        return JobState.FAILED, f"PBS exit status {status}", None, None
    return JobState.COMPLETED if status == 0 else JobState.FAILED, comment, status, None


def variables_of(value: object) -> dict[str, str]:
    """``Variable_List`` as a mapping; qstat's JSON gives an object, older output a string."""
    if isinstance(value, dict):
        return {str(name): str(text) for name, text in value.items()}
    if not isinstance(value, str):
        return {}
    pairs = (item.partition("=") for item in re.split(r"(?<!\\),", value))
    return {name: text.replace("\\,", ",") for name, _, text in pairs if name}


def path_of(value: object) -> str | None:
    """A path from PBS's ``host:/path`` form."""
    if not isinstance(value, str) or not value:
        return None
    host, colon, path = value.partition(":")
    return path if colon and "/" not in host else value


# --- output and errors ----------------------------------------------------------------


def _lines(raw: bytes) -> list[str]:
    return [line for line in raw.decode(errors="replace").splitlines() if line.strip()]
