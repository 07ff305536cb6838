"""Functions: a Python function registered with its input schema runs in a pool of workers
on a system and streams its output back over HTTP.

:class:`FunctionCreate` is what a user registers; :class:`Function` what the API shows;
:class:`Invocation` one call of it, and :class:`InvocationResult` a call's whole answer
when it is not streamed. The event stream's events carry a sequence number (``seq``, from
1) that is each Server-Sent Event's ``id``.
"""

from __future__ import annotations

import json
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from hpcgate.model.bounds import (
    CONCURRENT_MAX,
    COUNT_MAX,
    GRACE_MAX,
    KEY_MAX,
    PER_MINUTE_MAX,
    SECONDS_MAX,
    MaybeNumber,
    Number,
)
from hpcgate.model.jobs import MemoryMiB, ProjectName, TimeLimit, Word
from hpcgate.model.services import Replica, SystemRef

#: A function's name: part of URLs and of its pool's service name.
FunctionName = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_-]{0,39}$")]
#: A function as an API key names it: ``NAME`` (its user's own) or ``PROJECT~NAME`` (a
#: project's, which the key's user owns the project of).
KeyFunctionName = Annotated[
    str, StringConstraints(pattern=r"^(?:[a-z][a-z0-9_-]{0,62}~)?[a-z][a-z0-9_-]{0,39}$")
]
#: A Python identifier: the callable looked up in the source or the entry's module.
Identifier = Annotated[str, StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")]
#: ``package.module`` or ``package.module:attribute``, importable on the system.
Entry = Annotated[
    str,
    StringConstraints(
        pattern=r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*(:[A-Za-z_][A-Za-z0-9_]*)?$",
        max_length=255,
    ),
]
#: The worker's interpreter: an absolute path or a bare command name.
PythonCommand = Annotated[
    str,
    StringConstraints(pattern=r"^(/[A-Za-z0-9._+/-]{1,254}|[A-Za-z0-9._+-]{1,64})$"),
]
#: An invocation's id: chosen by the gateway, 1-64 of ``[A-Za-z0-9_-]``.
InvocationId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
UserName = Annotated[str, StringConstraints(pattern=r"^(\*|[A-Za-z0-9_][A-Za-z0-9_.-]{0,63})$")]

SOURCE_MAX = 1 << 20  # bytes of a function's source
SCHEMA_MAX = 64 << 10  # bytes of its input schema, as JSON
CONCURRENCY_MAX = 1000  # invocations one worker runs at once
WORKERS_MAX = 64  # workers of one function (replicas of its pool's service)
SEQ_MAX = KEY_MAX  # events of one invocation


class Concurrency(StrEnum):
    """How a worker runs invocations side by side: in threads, as coroutines on its event
    loop (a plain function then runs in a thread), or each in a child process."""

    THREADS = "threads"
    ASYNC = "async"
    PROCESSES = "processes"


class FunctionLimits(BaseModel):
    """A function's limits on each of its callers: a user (with its own token) and each API
    key apart. Its owner's own token has none; the owner's keys are callers like any other.
    A key's own limits apply too: the stricter wins. Past either, a 429 that changes nothing."""

    model_config = ConfigDict(extra="forbid")

    per_minute: MaybeNumber = Field(
        None,
        ge=1,
        le=PER_MINUTE_MAX,
        description="Invocations each caller may start in any 60 s (none: no limit)",
    )
    concurrent: MaybeNumber = Field(
        None,
        ge=1,
        le=CONCURRENT_MAX,
        description="Unended invocations each caller may have at once (none: no limit)",
    )


class FunctionSettings(BaseModel):
    """How a function's workers run: concurrency, the interpreter, the pool's scale and
    each worker job's resources, and who else may invoke it."""

    model_config = ConfigDict(extra="forbid")

    concurrency: Concurrency = Field(Concurrency.THREADS, description="threads, async, processes")
    max_concurrency: Number = Field(
        8, ge=1, le=CONCURRENCY_MAX, description="Invocations one worker runs at once"
    )
    python: PythonCommand = Field(
        "python3", description="The workers' Python (>= 3.9): an absolute path or a command"
    )
    min_workers: Number = Field(0, ge=0, le=WORKERS_MAX, description="0 = scale to zero")
    max_workers: Number = Field(1, ge=1, le=WORKERS_MAX, description="Workers at most")
    idle_seconds: Number = Field(
        600, ge=1, le=SECONDS_MAX, description="A worker idle this long stops (never below min)"
    )
    time_limit: TimeLimit = Field(
        None, gt=0, le=SECONDS_MAX, description="Each worker job's time limit (seconds or Slurm)"
    )
    partition: Word | None = None
    account: Word | None = Field(None, description="The scheduler account charged")
    cpus_per_task: MaybeNumber = Field(None, ge=1, le=COUNT_MAX)
    memory: MemoryMiB = Field(None, gt=0, le=COUNT_MAX, description="MiB per node, or '4G'")
    gpus: MaybeNumber = Field(None, ge=0, le=COUNT_MAX)
    users: list[UserName] = Field(
        default_factory=list,
        max_length=256,
        description="Who else may invoke it (user names, or '*' for every user); they see"
        " their own invocations only",
    )
    limits: FunctionLimits = Field(
        default_factory=FunctionLimits,
        description="Its rate limits on each caller but its owner (see FunctionLimits)",
    )

    @model_validator(mode="after")
    def _min_below_max(self) -> FunctionSettings:
        if self.min_workers > self.max_workers:
            raise ValueError("min_workers must not exceed max_workers")
        return self


class FunctionCreate(FunctionSettings):
    """A function to register: its code (``source`` or an installed ``entry``), the callable
    in it, and the JSON Schema its input is checked against."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "name": "hello",
                    "system": "local",
                    "source": "def hello(who):\n    yield f'hello {who}'\n    return len(who)\n",
                    "input_schema": {
                        "type": "object",
                        "properties": {"who": {"type": "string", "default": "world"}},
                    },
                }
            ]
        },
    )

    name: FunctionName
    system: SystemRef = Field(description="The configured system its workers run on")
    project: ProjectName | None = Field(
        None,
        description="Register it in this project (your role there: member or owner): it"
        " still runs as you; the project's members address it as PROJECT~NAME",
    )
    source: str | None = Field(
        None,
        min_length=1,
        max_length=SOURCE_MAX,
        description="Python source defining the callable (at most 1 MiB): compiled on the"
        " gateway to find syntax errors, run only by the workers",
    )
    entry: Entry | None = Field(
        None, description="Instead of source: 'package.module' or 'package.module:callable'"
    )
    callable: Identifier | None = Field(
        None, description="The callable's name (default: the entry's, else the function's name)"
    )
    input_schema: dict[str, Any] = Field(
        default_factory=lambda: {"type": "object"},
        description="A JSON Schema for the input object (at most 64 KiB; default: any"
        " object). Top-level properties' defaults are filled in.",
    )

    @model_validator(mode="after")
    def _one_code(self) -> FunctionCreate:
        if (self.source is None) == (self.entry is None):
            raise ValueError("give exactly one of 'source' and 'entry'")
        if len(json.dumps(self.input_schema)) > SCHEMA_MAX:
            raise ValueError(f"input_schema is larger than {SCHEMA_MAX} bytes as JSON")
        return self

    def target(self) -> str:
        """The callable the workers call."""
        if self.callable is not None:
            return self.callable
        if self.entry is not None and ":" in self.entry:
            return self.entry.rpartition(":")[2]
        return self.name


class Function(BaseModel):
    """A registered function as the API shows it."""

    name: str
    owner: str
    project: str | None = Field(
        None, description="The project it belongs to (address it as PROJECT~NAME); None: none"
    )
    system: str
    callable: str
    entry: str | None = None
    source: str | None = Field(None, description="Its source: shown to its owner only")
    input_schema: dict[str, Any]
    settings: FunctionSettings
    created_at: datetime
    workers: list[Replica] = Field(
        default_factory=list, description="Its pool's workers (shown to its owner only)"
    )
    problem: str | None = Field(None, description="What keeps its pool from starting workers")


class InvocationState(StrEnum):
    """``queued`` until a worker takes it, ``running``, then one of the ends."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def ended(self) -> bool:
        return self in _ENDED


_ENDED = frozenset({InvocationState.SUCCEEDED, InvocationState.FAILED, InvocationState.CANCELLED})


class InvocationError(BaseModel):
    """Why an invocation failed: the exception's type and message (the traceback to the
    function's owner only). Types of hpcgate's own: ImportFailed, Cancelled, WorkerCrashed,
    NotSerializable (the worker's), WorkerLost, NoWorker (the gateway's)."""

    type: str = Field(max_length=256)
    message: str
    traceback: str | None = None


class Invocation(BaseModel):
    """One call of a function."""

    id: str
    function: str
    caller: str
    state: InvocationState
    detached: bool = Field(description="Its caller's disconnecting does not cancel it")
    grace: int | None = Field(
        None,
        ge=1,
        le=GRACE_MAX,
        description="Detached with a grace: it is cancelled once no client has read its"
        " events for this many seconds (null: not detached, or detached for ever)",
    )
    events: int = Field(
        0, ge=0, le=SEQ_MAX, description="Its final event's seq, once it has ended (0 before)"
    )
    created_at: datetime
    ended_at: datetime | None = None
    error: InvocationError | None = None
    key: str | None = Field(None, description="The id of the API key that started it, if one did")


class FunctionEvent(BaseModel):
    """One event of an invocation, as the SSE stream's ``data`` carries it."""

    seq: int = Field(ge=1, le=SEQ_MAX)
    type: str = Field(
        description="output, result or error; key: an encrypted invocation's first event"
    )
    data: Any = None
    encoding: str | None = Field(None, description="'base64' for bytes output")


class InvocationResult(BaseModel):
    """An invocation's whole answer (invoked without ``Accept: text/event-stream``)."""

    id: str
    state: InvocationState
    output: list[Any] = Field(description="Each yield's data, in order")
    result: Any = Field(None, description="The return value (succeeded)")
    error: InvocationError | None = None
    events: list[FunctionEvent] | None = Field(
        None,
        description="An encrypted invocation's events as the worker sealed them (its key"
        " event first); `output`, `result` and `error` then stay empty: the caller opens them",
    )
