"""Services: long-running servers started as jobs, kept between a minimum and a maximum
number of replicas, and reached through the gateway's proxy.

:class:`ServiceSpec` is what a service runs and how it scales, common to a service the
admin declares in the configuration and one a user creates (:class:`ServiceCreate`);
:class:`Service` and :class:`Replica` are what the API shows of them.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from hpcgate.model.bounds import (
    BYTES_MAX,
    COUNT_MAX,
    KEY_MAX,
    PORT_MAX,
    REPLICAS_MAX,
    SECONDS_MAX,
    MaybeNumber,
    Number,
)
from hpcgate.model.jobs import MemoryMiB, PathText, ProjectName, TimeLimit, Word

DAY = 24 * 3600
#: A service's name: it is part of job names (``hpcgate-NAME-PORT``) and of URLs.
ServiceName = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9-]{0,39}$")]
#: Between a project's name and its service's in the name that addresses a project's
#: service, ``PROJECT~NAME``: neither a project's nor a service's name can hold it.
PROJECT_SEPARATOR = "~"
#: The name that addresses a service in a URL: ``NAME`` (the caller's own, or a declared
#: one) or ``PROJECT~NAME`` (a project's), never one for the other.
QUALIFIED_PATTERN = r"^(?:[a-z][a-z0-9_-]{0,62}~)?[a-z][a-z0-9-]{0,39}$"
#: A token's limit to one service (it is stored in 64 characters).
QualifiedName = Annotated[str, StringConstraints(pattern=QUALIFIED_PATTERN, max_length=64)]
ModelName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:/@+-]{0,127}$")]
HealthPath = Annotated[str, StringConstraints(pattern=r"^/[\x21-\x7e]{0,1023}$")]
SystemRef = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_-]{0,62}$")]


class ReplicaState(StrEnum):
    """A replica's life: ``starting`` until its health check answers 2xx, then ``ready``
    (it takes requests); ``draining`` takes no new requests and ends when the running ones
    have; ``stopped`` and ``failed`` are the ends."""

    STARTING = "starting"
    READY = "ready"
    DRAINING = "draining"
    STOPPED = "stopped"
    FAILED = "failed"

    @property
    def live(self) -> bool:
        return self in (ReplicaState.STARTING, ReplicaState.READY, ReplicaState.DRAINING)


class Scale(BaseModel):
    """How many replicas a service keeps: ``min_replicas`` always (0: scale to zero), at
    most ``max_replicas`` (0: stopped)."""

    model_config = ConfigDict(extra="forbid")

    min_replicas: Number = Field(0, ge=0, le=REPLICAS_MAX, description="0 = scale to zero")
    max_replicas: Number = Field(1, ge=0, le=REPLICAS_MAX, description="0 = none at all")

    @model_validator(mode="after")
    def _min_below_max(self) -> Scale:
        if self.min_replicas > self.max_replicas:
            raise ValueError("min_replicas must not exceed max_replicas")
        return self


class ServiceSpec(Scale):
    """What a service runs, where, with which resources, and by which rules it scales."""

    system: SystemRef = Field(description="The configured system its replicas run on")
    script: str | None = Field(
        None,
        min_length=2,
        max_length=1 << 20,
        description="The batch script that starts the server on $HPCGATE_SERVICE_PORT;"
        " must start with '#!'",
    )
    script_path: PathText | None = Field(None, description="A script file on the system instead")
    models: list[ModelName] = Field(
        default_factory=list, max_length=64, description="OpenAI model names it answers"
    )
    target_in_flight: Number = Field(
        8, ge=1, le=100_000, description="Requests at once per replica before scaling up"
    )
    idle_seconds: Number = Field(
        600, ge=1, le=SECONDS_MAX, description="A replica idle this long stops (never below min)"
    )
    handover_seconds: Number = Field(
        300, ge=0, le=SECONDS_MAX, description="Start a successor this long before a time limit"
    )
    health_path: HealthPath = Field("/health", description="Ready when this answers 2xx")
    keep_prefix: bool = Field(
        False,
        description="Pass the proxy's whole path on (an app served under its public prefix,"
        " $HPCGATE_SERVICE_PREFIX, such as Jupyter with that base URL); false: only the part"
        " after the prefix",
    )
    ready_timeout: Number = Field(
        900, ge=1, le=7 * DAY, description="Seconds a replica may take to become ready"
    )
    request_timeout: Number = Field(
        300,
        ge=1,
        le=DAY,
        description="Seconds a proxied request may wait for the backend's"
        " next bytes before it is answered 504",
    )
    time_limit: TimeLimit = Field(
        None, gt=0, le=SECONDS_MAX, description="Each replica job's time limit (seconds or Slurm)"
    )
    partition: Word | None = None
    account: Word | None = Field(None, description="The scheduler account charged")
    cpus_per_task: MaybeNumber = Field(None, ge=1, le=COUNT_MAX)
    memory: MemoryMiB = Field(None, gt=0, le=BYTES_MAX >> 20, description="MiB per node, or '4G'")
    gpus: MaybeNumber = Field(None, ge=0, le=COUNT_MAX)

    @model_validator(mode="after")
    def _one_script(self) -> ServiceSpec:
        if (self.script is None) == (self.script_path is None):
            raise ValueError("give exactly one of 'script' and 'script_path'")
        if self.script is not None and not self.script.startswith("#!"):
            raise ValueError("the script must start with '#!' (an interpreter line)")
        return self


class ServiceCreate(ServiceSpec):
    """A service a user starts: it runs as that user and only that user sees it, or, in a
    project, it runs as that user and the project's members see it as ``PROJECT~NAME``."""

    name: ServiceName
    project: ProjectName | None = Field(
        None,
        description="Create it in this project (the caller's role must be member or owner):"
        " it still runs as the caller's account; its members address it as PROJECT~NAME",
    )


class ServicePatch(BaseModel):
    """A change of scale; a field left out keeps its value."""

    model_config = ConfigDict(extra="forbid")

    min_replicas: MaybeNumber = Field(None, ge=0, le=REPLICAS_MAX)
    max_replicas: MaybeNumber = Field(None, ge=0, le=REPLICAS_MAX)


class Replica(BaseModel):
    """One replica: a job running the service's server."""

    id: int = Field(ge=0, le=KEY_MAX)
    job_id: str | None = Field(None, description="The scheduler's job id, once submitted")
    state: ReplicaState
    node: str | None = None
    address: str | None = Field(None, description="The node's address, as the cluster has it")
    port: int = Field(ge=1, le=PORT_MAX)
    in_flight: int = Field(0, ge=0, le=COUNT_MAX, description="Requests it serves right now")
    created_at: datetime
    ready_at: datetime | None = None
    last_health_at: datetime | None = None
    last_health_ok: bool | None = None
    reason: str | None = Field(None, description="Why it failed or stopped")


class Service(BaseModel):
    """A service as the API shows it."""

    name: str
    owner: str | None = Field(
        description="Its user (who created it: it runs as that account); None: declared in"
        " the configuration"
    )
    project: str | None = Field(
        None, description="The project it belongs to (address it as PROJECT~NAME); None: none"
    )
    stopping: bool = Field(False, description="Deleted: its replicas are draining")
    problem: str | None = Field(
        None,
        description="What keeps the controller from starting the replicas the service"
        " wants, as it last found (its account cannot be resolved, a limit of its owner's,"
        " no free port); None: nothing",
    )
    spec: ServiceSpec
    replicas: list[Replica]


class ServiceEvent(BaseModel):
    """One event of a service's stream: a replica's change of state, a line its server
    wrote to stderr, or a change of the service's problem."""

    kind: str = Field(description="'state', 'stderr' or 'problem'")
    replica: int | None = Field(None, ge=0, le=KEY_MAX, description="None: a 'problem'")
    state: ReplicaState | None = None
    text: str | None = Field(
        None,
        description="The reason of a state, the stderr line, or the service's problem"
        " (None: it has none any more)",
    )
    time: datetime


def split_name(name: str) -> tuple[str | None, str]:
    """``PROJECT~NAME`` as (project, name); a plain ``NAME`` as (None, name)."""
    project, separator, bare = name.rpartition(PROJECT_SEPARATOR)
    return (project, bare) if separator else (None, name)


def qualified_name(project: str | None, name: str) -> str:
    """The name that addresses the service: ``PROJECT~NAME`` in a project, else ``NAME``."""
    return f"{project}{PROJECT_SEPARATOR}{name}" if project else name
