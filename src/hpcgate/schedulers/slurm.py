"""Adapter for Slurm's command line: sbatch, squeue, sacct, scancel.

Pure: argv builders and parsers, with Slurm's knowledge kept as data (the state table,
the output formats, the messages that mean "the controller is down"). Live jobs come from
``squeue``; jobs that left it (after ``MinJobAge``) and exit codes come from ``sacct``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import UTC, datetime

from hpcgate.model.bounds import ARRAY_INDEX_MAX
from hpcgate.model.commands import Command, CommandResult
from hpcgate.model.errors import SchedulerUnavailable
from hpcgate.model.jobs import JobSpec, JobState
from hpcgate.model.scheduler import SchedulerJob, SubmitContext
from hpcgate.schedulers.base import Scheduler
from hpcgate.schedulers.slurm_format import (
    SEP,
    exit_status,
    format_duration,
    hostnames,
    parse_duration,
    raise_for,
    state_of,
    time_of,
)
from hpcgate.schedulers.slurm_info import SlurmInfo

# squeue --Format fields, each ended by SEP; the name is last (the field most likely to
# hold odd characters). StdOut/StdErr are the unexpanded patterns, made absolute; exit_code
# is the raw wait status (exit 7 is 1792), set once the job has ended.
SQUEUE_FIELDS = (
    "JobID",
    "ArrayJobID",
    "ArrayTaskID",
    "State",
    "Reason",
    "SubmitTime",
    "StartTime",
    "EndTime",
    "WorkDir",
    "TimeLimit",
    "StdOut",
    "StdErr",
    "exit_code",
    "NodeList",
    "UserName",
    "Name",
)
COMMENT_PREFIX = "hpcgate:"  # sbatch --comment: finds a job whose submit timed out
HISTORY_MARGIN = 3600  # seconds before a lost submit's row that sacct also searches
SACCT_FIELDS = "JobID,JobIDRaw,State,ExitCode,Submit,Start,End,WorkDir,Timelimit,NodeList,JobName"
_OPTIONS = {  # JobSpec field -> sbatch option, for fields passed through as they are
    "name": "--job-name",
    "partition": "--partition",
    "account": "--account",
    "qos": "--qos",
    "nodes": "--nodes",
    "ntasks": "--ntasks",
    "cpus_per_task": "--cpus-per-task",
    "gpus": "--gpus",
    "array": "--array",
}


class SlurmScheduler(Scheduler):
    """Slurm through its command-line tools (22.05 and newer)."""

    kind = "slurm"
    dependency_directive = re.compile(r"^#SBATCH[ \t]+(?:-d|--dep[a-z]*)", re.MULTILINE)
    supported_fields = frozenset(JobSpec.model_fields)
    info = SlurmInfo()

    def submit_command(self, spec: JobSpec, context: SubmitContext) -> Command:
        argv = ["sbatch", "--parsable", "--export=ALL", f"--comment={COMMENT_PREFIX}{context.tag}"]
        argv.append(f"--chdir={spec.working_directory or context.default_workdir}")
        argv += [
            f"{option}={getattr(spec, field)}"
            for field, option in _OPTIONS.items()
            if getattr(spec, field) is not None
        ]
        stdout = spec.stdout or ("slurm-%A_%a.out" if spec.array else "slurm-%j.out")
        argv += [f"--output={stdout}", f"--error={spec.stderr or stdout}"]
        if spec.time_limit is not None:
            argv.append(f"--time={format_duration(spec.time_limit)}")
        if spec.memory is not None:
            argv.append(f"--mem={spec.memory}M")
        if spec.dependencies:
            argv.append(f"--dependency={','.join(spec.dependencies)}")
        if spec.script_path is not None:
            argv += ["--", spec.script_path]
        stdin = spec.script.encode() if spec.script is not None else None
        return Command(tuple(argv), stdin, env=spec.environment)

    def parse_submit(self, result: CommandResult) -> str:
        raise_for(result)
        # --parsable prints "id" or "id;cluster"
        return result.stdout.decode().strip().split(";", 1)[0]

    def find_command(self, tag: str) -> Command | None:
        # Every job slurmctld holds (finished ones for MinJobAge): rare, only after a timeout.
        return Command(("squeue", "--noheader", "--states=all", f"--format=%F{SEP}%k"))

    def parse_find(self, result: CommandResult, tag: str) -> str | None:
        raise_for(result)
        wanted = f"{COMMENT_PREFIX}{tag}"
        for line in result.stdout.decode(errors="replace").splitlines():
            job_id, _, comment = line.partition(SEP)
            if comment == wanted:
                return job_id
        return None

    def find_in_history_command(self, tag: str, since: datetime) -> Command | None:
        # The submit line, as slurmdbd recorded it, holds the tag: jobs that have left
        # squeue (MinJobAge) are found there. Relative time: the host's clock zone is unknown.
        ago = max(0, int((datetime.now(UTC) - since).total_seconds())) + HISTORY_MARGIN
        return Command(
            (
                "sacct", "--allusers", "--allocations", "--parsable2", "--noheader",
                f"--delimiter={SEP}", f"--starttime=now-{ago}seconds",
                "--format=JobID,SubmitLine",
            )
        )  # fmt: skip

    def parse_find_in_history(self, result: CommandResult, tag: str) -> str | None:
        raise_for(result)
        wanted = f"--comment={COMMENT_PREFIX}{tag}"
        for line in result.stdout.decode(errors="replace").splitlines():
            job_id, _, submit_line = line.partition(SEP)
            if wanted in submit_line.split():
                return job_id.split("_", 1)[0]  # an array task's line: the array's id
        return None

    def ping_command(self) -> Command | None:
        return Command(("scontrol", "ping"))

    def parse_ping(self, result: CommandResult) -> None:
        text = result.stdout.decode()
        if not result.ok or " is UP" not in text:
            raise SchedulerUnavailable(
                f"slurmctld is not answering: {text.strip() or result.error_text()}"
            )

    def status_command(self, native_ids: Sequence[str]) -> Command:
        return Command(
            (
                "squeue",
                "--noheader",
                "--states=all",
                f"--jobs={','.join(native_ids)}",
                "--Format=" + ",".join(f"{field}:{SEP}" for field in SQUEUE_FIELDS),
            )
        )

    def parse_status(self, result: CommandResult) -> list[SchedulerJob]:
        if result.returncode != 0 and b"Invalid job id" in result.stderr:
            return []  # every listed job has left squeue: sacct will tell
        raise_for(result)
        lines = result.stdout.decode(errors="replace").splitlines()
        return [job for line in lines if line for job in _squeue_jobs(line)]

    def history_command(self, native_ids: Sequence[str]) -> Command | None:
        return Command(
            (
                "sacct",
                "--allocations",
                "--parsable2",
                "--noheader",
                f"--delimiter={SEP}",
                f"--jobs={','.join(native_ids)}",
                f"--format={SACCT_FIELDS}",
            )
        )

    def parse_history(self, result: CommandResult) -> list[SchedulerJob]:
        raise_for(result)
        lines = result.stdout.decode(errors="replace").splitlines()
        return [job for line in lines if line for job in _sacct_jobs(line)]

    def cancel_command(self, native_id: str) -> Command:
        return Command(("scancel", native_id))

    def parse_cancel(self, result: CommandResult) -> None:
        raise_for(result)


def task_ids(text: str) -> list[str]:
    """Array task ids from Slurm's notation: ``7``, ``[0-9%2]``, ``[1,3,5-9:2]``."""
    ids: list[str] = []
    for item in text.strip("[]").split("%", 1)[0].split(","):
        bounds, _, step = item.partition(":")
        low, _, high = bounds.partition("-")
        if _indices(low, high or low, step or "1"):
            ids += [str(n) for n in range(int(low), int(high or low) + 1, int(step or 1))]
    return ids


def _indices(low: str, high: str, step: str) -> bool:
    """Whether a range of array indices is one Slurm can hold (its MaxArraySize is at most
    4000001), so a garbled one never makes a list the size of its numbers."""
    numbers = (low, high, step)
    return all(n.isdigit() and len(n) < 10 for n in numbers) and int(high) <= ARRAY_INDEX_MAX


def expand_pattern(pattern: str, values: dict[str, str]) -> str:
    """An sbatch ``--output`` pattern with its ``%j %A %a %x %u %%`` replaced."""
    return re.sub(r"%(%|[jAaxu])", lambda m: values.get(m.group(1), "%"), pattern)


def node_list(text: str) -> str | None:
    """Slurm's host list (``node[1-2]``) as expanded names; None before any is assigned."""
    if text in ("", "(null)", "None assigned", "n/a"):
        return None
    return ",".join(hostnames(text)) or None


def wait_status(text: str) -> tuple[int | None, int | None]:
    """A raw wait status as (exit code, signal): 1792 is exit 7, 9 is SIGKILL."""
    if not text.isdigit():
        return None, None
    status = int(text)
    if status & 0x7F:
        return None, status & 0x7F
    return status >> 8, None


def _squeue_jobs(line: str) -> list[SchedulerJob]:
    fields = line.removesuffix(SEP).split(SEP, len(SQUEUE_FIELDS) - 1)
    raw, array_id, tasks, state, reason, submit, start, end, workdir, limit = fields[:10]
    stdout, stderr, status, nodes, user, name = fields[10:]
    parsed = state_of(state)
    code, signal = wait_status(status) if parsed.terminal else (None, None)
    if parsed is JobState.COMPLETED and code not in (0, None):
        parsed = JobState.FAILED
    jobs = []
    for task in task_ids(tasks) if tasks not in ("N/A", "") else [None]:
        values = {"j": raw, "A": array_id, "a": task or "", "x": name, "u": user}
        jobs.append(
            SchedulerJob(
                native_id=raw if task is None else f"{array_id}_{task}",
                array_job_id=None if task is None else array_id,
                state=parsed,
                reason=None if reason in ("None", "") else reason,
                exit_code=code,
                signal=signal,
                name=name,
                submit_time=time_of(submit),
                start_time=time_of(start),
                end_time=time_of(end) if parsed.terminal else None,
                working_directory=workdir or None,
                time_limit=parse_duration(limit),
                node_list=node_list(nodes),
                stdout=expand_pattern(stdout, values) if stdout else None,
                stderr=expand_pattern(stderr, values) if stderr else None,
            )
        )
    return jobs


def _sacct_jobs(line: str) -> list[SchedulerJob]:
    job_id, _raw, state, exit_text, submit, start, end, workdir, limit, nodes, name = line.split(
        SEP, 10
    )
    code, signal = exit_status(exit_text)
    parsed = state_of(state)
    if parsed is JobState.COMPLETED and code not in (0, None):
        parsed = JobState.FAILED
    array_id, _, tasks = job_id.partition("_")
    return [
        SchedulerJob(
            native_id=array_id if task is None else f"{array_id}_{task}",
            array_job_id=None if task is None else array_id,
            state=parsed,
            exit_code=code,
            signal=signal,
            name=name,
            submit_time=time_of(submit),
            start_time=time_of(start),
            end_time=time_of(end),
            working_directory=workdir or None,
            time_limit=parse_duration(limit),
            node_list=node_list(nodes),
        )
        for task in (task_ids(tasks) if tasks else [None])
    ]
