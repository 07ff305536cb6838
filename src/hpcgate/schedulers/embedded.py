"""Adapter for the embedded scheduler (:mod:`hpcgate.embedded`), driven through its CLI.

The engine takes a JSON job document on stdin and prints JSON, so nothing here is quoted
or pasted into a shell, and the engine works over any transport that can run Python.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from hpcgate.model.bounds import reported_epoch
from hpcgate.model.commands import Command, CommandResult
from hpcgate.model.errors import NotFound, SchedulerRejected, SchedulerUnavailable
from hpcgate.model.jobs import JobSpec, JobState
from hpcgate.model.scheduler import RunAs, SchedulerJob, SubmitContext
from hpcgate.schedulers.base import Scheduler
from hpcgate.schedulers.embedded_info import EmbeddedInfo

_USER_ERROR = 2
_UNKNOWN_JOB = 3


class EmbeddedScheduler(Scheduler):
    """The small batch scheduler that ships with hpcgate (default ``local`` system)."""

    kind = "embedded"
    dependency_directive = re.compile(r"^#SBATCH[ \t]+(?:-d|--dep[a-z]*)", re.MULTILINE)
    supported_fields = frozenset(
        {
            "script",
            "script_path",
            "name",
            "working_directory",
            "environment",
            "time_limit",
            "stdout",
            "stderr",
            "dependencies",
        }
    )
    idempotent_submit = True
    # Its commands run as the gateway (the spool is the gateway's); a root gateway hands it
    # the caller's account and its supervisor starts the job as that account, never as root.
    handed_account = True

    def __init__(
        self, spool: Path, slots: int, python: str = sys.executable, partition: str = "local"
    ) -> None:
        self._base: tuple[str, ...] = (
            python,
            "-m",
            "hpcgate.embedded",
            "--spool",
            str(spool),
            "--slots",
            str(slots),
        )
        self.info = EmbeddedInfo(self._base, partition)

    def check(self, spec: JobSpec) -> None:
        # One process on one machine: a request for exactly one of these is honoured.
        trivial = {f for f in ("nodes", "ntasks", "cpus_per_task") if getattr(spec, f) == 1}
        super().check(spec.model_copy(update=dict.fromkeys(trivial)))

    def submit_command(self, spec: JobSpec, context: SubmitContext) -> Command:
        document = {
            "script": spec.script,
            "script_path": spec.script_path,
            "name": spec.name,
            "workdir": spec.working_directory or context.default_workdir,
            "stdout": spec.stdout,
            "stderr": spec.stderr,
            "time_limit": spec.time_limit,
            "env": spec.environment,
            "dependencies": spec.dependencies,
            "tag": context.tag,
            "run_as": _run_as(context.run_as),
        }
        return Command((*self._base, "submit"), json.dumps(document).encode())

    def parse_submit(self, result: CommandResult) -> str:
        _raise_for(result)
        return str(json.loads(result.stdout)["id"])

    def status_command(self, native_ids: Sequence[str]) -> Command:
        return Command((*self._base, "status", "--ids", ",".join(native_ids)))

    def parse_status(self, result: CommandResult) -> list[SchedulerJob]:
        _raise_for(result)
        return [_job(record) for record in json.loads(result.stdout)["jobs"]]

    def cancel_command(self, native_id: str) -> Command:
        return Command((*self._base, "cancel", native_id))

    def parse_cancel(self, result: CommandResult) -> None:
        _raise_for(result)


def _run_as(run_as: RunAs | None) -> dict[str, Any] | None:
    if run_as is None:
        return None
    return {"name": run_as.name, "uid": run_as.uid, "gid": run_as.gid, "groups": [*run_as.groups]}


def _raise_for(result: CommandResult) -> None:
    if result.returncode == _USER_ERROR:
        raise SchedulerRejected(result.error_text())
    if result.returncode == _UNKNOWN_JOB:
        raise NotFound(result.error_text())
    if not result.ok:
        raise SchedulerUnavailable(f"embedded scheduler failed: {result.error_text()}")


def _time(value: float | None) -> datetime | None:
    return reported_epoch(value, "a reported time")


def _job(record: dict[str, Any]) -> SchedulerJob:
    return SchedulerJob(
        native_id=str(record["id"]),
        state=JobState(record["state"]),
        reason=record.get("reason"),
        exit_code=record.get("exit_code"),
        signal=record.get("signal"),
        name=record.get("name"),
        submit_time=_time(record.get("submit_time")),
        start_time=_time(record.get("start_time")),
        end_time=_time(record.get("end_time")),
        working_directory=record.get("workdir"),
        stdout=record.get("stdout"),
        stderr=record.get("stderr"),
        time_limit=record.get("time_limit"),
        tag=record.get("tag"),
    )
