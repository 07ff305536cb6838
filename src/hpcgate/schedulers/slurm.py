"""Adapter for Slurm's command line: sbatch, squeue, sacct, scancel.

Pure: argv builders and parsers, with Slurm's knowledge kept as data (the state table,
the output formats, the messages that mean "the controller is down"). Live jobs come from
``squeue``; jobs that left it (after ``MinJobAge``) and exit codes come from ``sacct``.
"""

from __future__ import annotations

from collections.abc import Sequence

from hpcgate.commands import Command, CommandResult
from hpcgate.errors import SchedulerUnavailable
from hpcgate.jobs.models import JobSpec, JobState
from hpcgate.schedulers.base import Scheduler, SchedulerJob, SubmitContext
from hpcgate.schedulers.slurm_format import (
    SEP,
    exit_status,
    format_duration,
    parse_duration,
    raise_for,
    state_of,
    time_of,
)
from hpcgate.schedulers.slurm_info import SlurmInfo

# squeue -o fields: id, state, reason, submit, start, end, workdir, time limit, name (last:
# a name is the field most likely to hold odd characters).
SQUEUE_FORMAT = SEP.join(("%i", "%T", "%r", "%V", "%S", "%e", "%Z", "%l", "%j"))
SACCT_FIELDS = "JobID,State,ExitCode,Submit,Start,End,WorkDir,Timelimit,JobName"

_OPTIONS = {  # JobSpec field -> sbatch option, for fields passed through as they are
    "name": "--job-name",
    "partition": "--partition",
    "account": "--account",
    "nodes": "--nodes",
    "ntasks": "--ntasks",
    "cpus_per_task": "--cpus-per-task",
    "gpus": "--gpus",
    "stdout": "--output",
    "stderr": "--error",
    "array": "--array",
}


class SlurmScheduler(Scheduler):
    """Slurm through its command-line tools (22.05 and newer)."""

    kind = "slurm"
    supported_fields = frozenset(JobSpec.model_fields)
    info = SlurmInfo()

    def submit_command(self, spec: JobSpec, context: SubmitContext) -> Command:
        argv = ["sbatch", "--parsable", "--export=ALL", f"--comment=hpcgate:{context.tag}"]
        argv.append(f"--chdir={spec.working_directory or context.default_workdir}")
        argv += [
            f"{option}={getattr(spec, field)}"
            for field, option in _OPTIONS.items()
            if getattr(spec, field) is not None
        ]
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
                f"--format={SQUEUE_FORMAT}",
            )
        )

    def parse_status(self, result: CommandResult) -> list[SchedulerJob]:
        if result.returncode != 0 and b"Invalid job id" in result.stderr:
            return []  # every listed job has left squeue: sacct will tell
        raise_for(result)
        return [_squeue_job(line) for line in result.stdout.decode().splitlines() if line]

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
        return [_sacct_job(line) for line in result.stdout.decode().splitlines() if line]

    def cancel_command(self, native_id: str) -> Command:
        return Command(("scancel", native_id))

    def parse_cancel(self, result: CommandResult) -> None:
        raise_for(result)


def _squeue_job(line: str) -> SchedulerJob:
    job_id, state, reason, submit, start, end, workdir, limit, name = line.split(SEP, 8)
    parsed = state_of(state)
    return SchedulerJob(
        native_id=job_id,
        state=parsed,
        reason=None if reason in ("None", "") else reason,
        name=name,
        submit_time=time_of(submit),
        start_time=time_of(start),
        end_time=time_of(end) if parsed.terminal else None,
        working_directory=workdir or None,
        time_limit=parse_duration(limit),
    )


def _sacct_job(line: str) -> SchedulerJob:
    job_id, state, exit_text, submit, start, end, workdir, limit, name = line.split(SEP, 8)
    code, signal = exit_status(exit_text)
    parsed = state_of(state)
    if parsed is JobState.COMPLETED and code not in (0, None):
        parsed = JobState.FAILED
    return SchedulerJob(
        native_id=job_id,
        state=parsed,
        exit_code=code,
        signal=signal,
        name=name,
        submit_time=time_of(submit),
        start_time=time_of(start),
        end_time=time_of(end),
        working_directory=workdir or None,
        time_limit=parse_duration(limit),
    )
