"""Jobs as clients see them: the submitted spec, the states, the job record."""

from __future__ import annotations

import re
from datetime import datetime
from enum import StrEnum
from typing import Annotated

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

from hpcgate.model.bounds import (
    BYTES_MAX,
    COUNT_MAX,
    INT32_MAX,
    INT32_MIN,
    KEY_MAX,
    SECONDS_MAX,
    MaybeNumber,
    not_boolean,
)
from hpcgate.model.timefmt import parse_memory, parse_time_limit


class JobState(StrEnum):
    """A job's state; the first six are common to every scheduler."""

    PENDING = "PENDING"
    RUNNING = "RUNNING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"
    TIMEOUT = "TIMEOUT"
    OUT_OF_MEMORY = "OUT_OF_MEMORY"
    NODE_FAIL = "NODE_FAIL"
    PREEMPTED = "PREEMPTED"
    SUSPENDED = "SUSPENDED"

    @property
    def terminal(self) -> bool:
        return self not in _LIVE


_LIVE = frozenset({JobState.PENDING, JobState.RUNNING, JobState.SUSPENDED})


def _time_limit(value: object) -> object:
    return parse_time_limit(value) if isinstance(value, str) else not_boolean(value)


def _memory(value: object) -> object:
    return parse_memory(value) if isinstance(value, str) else not_boolean(value)


#: Seconds, or a Slurm time string ('30' = 30 min, '1:00:00').
TimeLimit = Annotated[int | None, BeforeValidator(_time_limit)]
#: MiB, or a string such as '4G'.
MemoryMiB = Annotated[int | None, BeforeValidator(_memory)]

_NO_CONTROL = r"^[^\x00-\x1f\x7f]*$"
Name = Annotated[str, StringConstraints(min_length=1, max_length=200, pattern=_NO_CONTROL)]
Word = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.+-]{1,128}$")]
PathText = Annotated[str, StringConstraints(min_length=1, max_length=4096, pattern=r"^[^\x00]*$")]
Dependency = Annotated[
    str, StringConstraints(pattern=r"^(after|afterok|afternotok|afterany):[0-9_]+(:[0-9_]+)*$")
]
_RANGE = r"\d+(-\d+(:\d+)?)?"
ArrayText = Annotated[str, StringConstraints(pattern=rf"^{_RANGE}(,{_RANGE})*(%\d+)?$")]
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


#: A project's name (as ``/api/v1/projects`` and the providers' group rules spell it).
PROJECT_NAME_PATTERN = r"^[a-z][a-z0-9_-]{0,62}$"
ProjectName = Annotated[str, StringConstraints(pattern=PROJECT_NAME_PATTERN)]
#: JobSpec fields that are the gateway's, not a scheduler's to honour.
GATEWAY_FIELDS = frozenset({"project"})


class JobSpec(BaseModel):
    """What to run and with which resources. Each scheduler maps these fields to its own
    options; a field the system's scheduler cannot honour is rejected, never dropped."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False)

    script: str | None = Field(None, description="The batch script text; must start with '#!'")
    script_path: PathText | None = Field(
        None,
        description="A script file on the system instead (a relative path starts at the"
        " caller's home); read as the caller and held to the rules of 'script'",
    )
    name: Name | None = Field(None, description="Job name")
    working_directory: PathText | None = Field(None, description="Directory the job starts in")
    environment: dict[str, str] = Field(default_factory=dict, description="Extra variables")
    time_limit: TimeLimit = Field(
        None,
        gt=0,
        le=SECONDS_MAX,
        description="Seconds, or a Slurm time string ('30' = 30 min, '1:00:00')",
    )
    partition: Word | None = None
    account: Word | None = None
    qos: Word | None = Field(None, description="Quality of service (Slurm --qos)")
    nodes: MaybeNumber = Field(None, ge=1, le=COUNT_MAX)
    ntasks: MaybeNumber = Field(None, ge=1, le=COUNT_MAX)
    cpus_per_task: MaybeNumber = Field(None, ge=1, le=COUNT_MAX)
    memory: MemoryMiB = Field(
        None,
        gt=0,
        le=BYTES_MAX >> 20,
        description="Memory per node in MiB, or a string such as '4G'",
    )
    gpus: MaybeNumber = Field(None, ge=0, le=COUNT_MAX)
    stdout: PathText | None = Field(None, description="Output file; %j is the job id")
    stderr: PathText | None = Field(None, description="Error file; %j is the job id")
    array: ArrayText | None = Field(None, description="Array indices, e.g. '0-9%2'")
    dependencies: list[Dependency] = Field(
        default_factory=list, description="Slurm-style, e.g. 'afterok:12' (all must hold)"
    )
    project: ProjectName | None = Field(
        None,
        description="Submit in this project (the caller's role must allow jobs:write): its"
        " members then read the job (viewers) and cancel it (members and owners)",
    )

    @model_validator(mode="after")
    def _one_script(self) -> JobSpec:
        if (self.script is None) == (self.script_path is None):
            raise ValueError("give exactly one of 'script' and 'script_path'")
        return self

    @field_validator("environment")
    @classmethod
    def _env_names(cls, env: dict[str, str]) -> dict[str, str]:
        for key, value in env.items():
            if not _ENV_NAME.match(key) or "\x00" in value:
                raise ValueError(f"invalid environment variable {key!r}")
        return env

    def given_fields(self) -> set[str]:
        """The fields the client set to something other than their empty default."""
        given = {n for n in self.model_fields_set if getattr(self, n) not in (None, [], {})}
        return given - GATEWAY_FIELDS


class Job(BaseModel):
    """A job as the API returns it."""

    id: str = Field(description="The scheduler's job id on this system")
    system: str
    owner: str
    array_job_id: str | None = Field(
        None, description="For an array task (id ARRAY_TASK): the id of its array"
    )
    name: str | None
    state: JobState
    reason: str | None = Field(None, description="Why the job is pending or how it ended")
    exit_code: int | None = Field(None, ge=INT32_MIN, le=INT32_MAX)
    signal: int | None = Field(
        None, ge=0, le=INT32_MAX, description="Signal that killed the job, if any"
    )
    submit_time: datetime | None = None
    start_time: datetime | None = None
    end_time: datetime | None = None
    working_directory: str | None = None
    nodes: list[str] = Field(
        default_factory=list, description="Nodes the job runs or ran on (once assigned)"
    )
    stdout: str | None = None
    stderr: str | None = None
    time_limit: int | None = Field(None, ge=0, le=SECONDS_MAX, description="Seconds")
    project: str | None = Field(None, description="The project it was submitted in")


class JobPage(BaseModel):
    """One page of a job listing, newest first."""

    items: list[Job]
    next_cursor: str | None = Field(None, description="Pass as 'cursor' for the next page")


class JobEvent(BaseModel):
    """A state change of a job, as sent on its event stream."""

    id: int = Field(ge=0, le=KEY_MAX)
    job_id: str
    state: JobState
    reason: str | None = None
    exit_code: int | None = Field(None, ge=INT32_MIN, le=INT32_MAX)
    signal: int | None = Field(None, ge=0, le=INT32_MAX)
    time: datetime
