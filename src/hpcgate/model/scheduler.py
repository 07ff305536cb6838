"""What the gateway tells a scheduler adapter of a submit, and what an adapter reports of a
job: the values that pass between the jobs domain and the scheduler adapters."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from hpcgate.model.jobs import JobState


@dataclass(frozen=True, slots=True)
class SubmitContext:
    """What the gateway adds to a spec: an idempotency tag and the default directory."""

    tag: str
    default_workdir: str


@dataclass(frozen=True, slots=True)
class SchedulerJob:
    """What one status query says about one job."""

    native_id: str
    state: JobState
    reason: str | None = None
    exit_code: int | None = None
    signal: int | None = None
    name: str | None = None
    submit_time: datetime | None = None
    start_time: datetime | None = None
    end_time: datetime | None = None
    working_directory: str | None = None
    stdout: str | None = None
    stderr: str | None = None
    time_limit: int | None = None
    #: The nodes the job runs or ran on, comma-separated host names (expanded).
    node_list: str | None = None
    tag: str | None = None
    #: For an array task (native id ``ARRAY_TASK``): the array's id.
    array_job_id: str | None = None
