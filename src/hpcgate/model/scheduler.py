"""What the gateway tells a scheduler adapter of a submit, and what an adapter reports of a
job: the values that pass between the jobs domain and the scheduler adapters."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from hpcgate.model.bounds import INT32_MAX, INT32_MIN, SECONDS_MAX, reported
from hpcgate.model.jobs import JobState


@dataclass(frozen=True, slots=True)
class RunAs:
    """The Unix account a job is to run as, for a scheduler whose commands run as the
    gateway and that starts each job as the account it is handed (embedded, as root)."""

    name: str
    uid: int
    gid: int
    groups: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class SubmitContext:
    """What the gateway adds to a spec: an idempotency tag, the default directory and,
    for a scheduler that is handed it, the account the job runs as (None: the gateway's)."""

    tag: str
    default_workdir: str
    run_as: RunAs | None = None


@dataclass(frozen=True, slots=True)
class SchedulerJob:
    """What one status query says about one job.

    Every adapter's report is one of these, so this is where a scheduler's numbers enter
    the gateway: each is bounded here to what the store and the API hold (out of range:
    unknown), and no report can make a write or a response fail.
    """

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

    def __post_init__(self) -> None:
        native_id = self.native_id
        bounded = {
            "exit_code": reported(self.exit_code, INT32_MIN, INT32_MAX, "exit code", native_id),
            "signal": reported(self.signal, 0, INT32_MAX, "signal", native_id),
            "time_limit": reported(self.time_limit, 0, SECONDS_MAX, "time limit", native_id),
        }
        for name, value in bounded.items():
            object.__setattr__(self, name, value)  # frozen: set once, while being made
