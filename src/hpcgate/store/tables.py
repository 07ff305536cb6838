"""The database schema (SQLAlchemy 2 typed ORM). Changes go through Alembic migrations."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

from hpcgate.clock import utcnow


class UTCDateTime(TypeDecorator[datetime]):
    """Timestamps stored in UTC and always read back timezone-aware (SQLite drops the zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return None if value is None else value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None or value.tzinfo is not None:
            return value
        return value.replace(tzinfo=UTC)


class Base(DeclarativeBase):
    pass


class TokenRow(Base):
    __tablename__ = "tokens"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    user: Mapped[str] = mapped_column(String(64), index=True)
    secret_hash: Mapped[str] = mapped_column(String(64))
    scopes: Mapped[str] = mapped_column(String(255))
    description: Mapped[str] = mapped_column(String(255), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The token that issued this one through the API (None: the CLI or first start).
    parent_id: Mapped[str | None] = mapped_column(String(32), index=True)
    # An agent token's one system (None: an ordinary token, which no agent may use).
    system: Mapped[str | None] = mapped_column(String(64), default=None)
    # The one user an agent token's agent must say it serves (None: no such bound).
    agent_user: Mapped[str | None] = mapped_column(String(64), default=None)
    # An API key's restriction: the function names it may invoke (JSON list; None: a full
    # token) and its limits (None: none).
    functions: Mapped[str | None] = mapped_column(Text)
    per_minute: Mapped[int | None] = mapped_column(Integer)
    concurrent: Mapped[int | None] = mapped_column(Integer)
    # A token's other limits (None/False: none): one system, project or service; reading.
    limit_system: Mapped[str | None] = mapped_column(String(64))
    limit_project: Mapped[str | None] = mapped_column(String(64))
    limit_service: Mapped[str | None] = mapped_column(String(64))
    read_only: Mapped[bool] = mapped_column(Boolean, default=False)


class ProjectRow(Base):
    """A project; its members are :class:`MemberRow` rows."""

    __tablename__ = "projects"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    description: Mapped[str] = mapped_column(String(255), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class MemberRow(Base):
    """A user's role in a project."""

    __tablename__ = "project_members"
    __table_args__ = (Index("ix_project_members_user", "user"),)

    project: Mapped[str] = mapped_column(
        ForeignKey("projects.name", ondelete="CASCADE"), primary_key=True
    )
    user: Mapped[str] = mapped_column(String(64), primary_key=True)
    role: Mapped[str] = mapped_column(String(16))
    added_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class JobRow(Base):
    __tablename__ = "jobs"
    __table_args__ = (
        UniqueConstraint("system", "native_id", name="uq_jobs_system_native_id"),
        UniqueConstraint("owner", "idempotency_key", name="uq_jobs_owner_idempotency_key"),
        Index("ix_jobs_system_owner", "system", "owner", "pk"),
        Index("ix_jobs_system_state", "system", "state"),
        Index("ix_jobs_system_project", "system", "project", "pk"),
    )

    pk: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    system: Mapped[str] = mapped_column(String(64))
    native_id: Mapped[str | None] = mapped_column(String(64))
    array_job_id: Mapped[str | None] = mapped_column(String(64))
    owner: Mapped[str] = mapped_column(String(64))
    # The Unix account the owner's identity provider named (None: as [users] maps the owner),
    # so that a submit settled after a crash runs as the account the request resolved to.
    account: Mapped[str | None] = mapped_column(String(64))
    # The project the job was submitted in (None: the owner's alone).
    project: Mapped[str | None] = mapped_column(String(64))
    name: Mapped[str | None] = mapped_column(String(255))
    state: Mapped[str] = mapped_column(String(32))
    reason: Mapped[str | None] = mapped_column(Text)
    exit_code: Mapped[int | None] = mapped_column(Integer)
    signal: Mapped[int | None] = mapped_column(Integer)
    submit_time: Mapped[datetime | None] = mapped_column(UTCDateTime)
    start_time: Mapped[datetime | None] = mapped_column(UTCDateTime)
    end_time: Mapped[datetime | None] = mapped_column(UTCDateTime)
    working_directory: Mapped[str | None] = mapped_column(Text)
    stdout: Mapped[str | None] = mapped_column(Text)
    stderr: Mapped[str | None] = mapped_column(Text)
    time_limit: Mapped[int | None] = mapped_column(Integer)
    node_list: Mapped[str | None] = mapped_column(Text)
    tag: Mapped[str] = mapped_column(String(64), unique=True)
    idempotency_key: Mapped[str | None] = mapped_column(String(255))
    request_hash: Mapped[str | None] = mapped_column(String(64))
    spec: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class JobEventRow(Base):
    __tablename__ = "job_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_pk: Mapped[int] = mapped_column(ForeignKey("jobs.pk", ondelete="CASCADE"), index=True)
    state: Mapped[str] = mapped_column(String(32))
    reason: Mapped[str | None] = mapped_column(Text)
    exit_code: Mapped[int | None] = mapped_column(Integer)
    signal: Mapped[int | None] = mapped_column(Integer)
    time: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class UploadRow(Base):
    """A resumable upload in progress: its bytes so far are in ``temporary``."""

    __tablename__ = "uploads"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    owner: Mapped[str] = mapped_column(String(64), index=True)
    system: Mapped[str] = mapped_column(String(64))
    path: Mapped[str] = mapped_column(Text)
    temporary: Mapped[str] = mapped_column(Text)
    size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str | None] = mapped_column(String(64))
    overwrite: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class TaskRow(Base):
    """A long operation and how it ended; JSON columns hold the API's shapes."""

    __tablename__ = "tasks"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    owner: Mapped[str] = mapped_column(String(64), index=True)
    system: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(32))
    state: Mapped[str] = mapped_column(String(16), index=True)
    progress: Mapped[str] = mapped_column(Text)
    request: Mapped[str] = mapped_column(Text)
    result: Mapped[str | None] = mapped_column(Text)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class ServiceRow(Base):
    """A service: one declared in the configuration (``owner`` empty, its spec copied from
    the configuration at each start) or one a user created, its own (``project`` empty) or
    a project's (it runs as ``owner``, who created it). A name is unique among an owner's
    own services and among a project's."""

    __tablename__ = "services"
    __table_args__ = (
        UniqueConstraint("owner", "project", "name", name="uq_services_owner_project_name"),
        Index(
            "uq_services_project_name",
            "project",
            "name",
            unique=True,
            sqlite_where=text("project <> ''"),
            postgresql_where=text("project <> ''"),
        ),
    )

    pk: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(64))
    owner: Mapped[str] = mapped_column(String(64))
    project: Mapped[str] = mapped_column(String(64), default="", server_default="")
    spec: Mapped[str] = mapped_column(Text)
    min_replicas: Mapped[int] = mapped_column(Integer)
    max_replicas: Mapped[int] = mapped_column(Integer)
    stopping: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ReplicaRow(Base):
    """A replica of a service: the job that runs its server, and where it listens."""

    __tablename__ = "service_replicas"
    __table_args__ = (Index("ix_service_replicas_service_state", "service_pk", "state"),)

    pk: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    service_pk: Mapped[int] = mapped_column(ForeignKey("services.pk", ondelete="CASCADE"))
    system: Mapped[str] = mapped_column(String(64))
    job_id: Mapped[str | None] = mapped_column(String(64))
    port: Mapped[int] = mapped_column(Integer)
    node: Mapped[str | None] = mapped_column(String(255))
    address: Mapped[str | None] = mapped_column(String(255))
    state: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    ready_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_health_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_health_ok: Mapped[bool | None] = mapped_column(Boolean)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class UsageRow(Base):
    """Requests and tokens of one user on one model of one service, within one hour
    (several rows may cover the same hour: reads add them up)."""

    __tablename__ = "service_usage"
    __table_args__ = (Index("ix_service_usage_user_hour", "user", "hour"),)

    pk: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    hour: Mapped[datetime] = mapped_column(UTCDateTime)
    user: Mapped[str] = mapped_column(String(64))
    owner: Mapped[str] = mapped_column(String(64))  # the service's ("": declared)
    service: Mapped[str] = mapped_column(String(64))
    model: Mapped[str] = mapped_column(String(128))
    requests: Mapped[int] = mapped_column(BigInteger)
    prompt_tokens: Mapped[int] = mapped_column(BigInteger)
    completion_tokens: Mapped[int] = mapped_column(BigInteger)


class FunctionRow(Base):
    """A registered function; its workers are the replicas of the service ``service_pk``
    (its pool, owned by the function's owner). In a project (``project`` not empty) it
    still runs as its owner, who registered it; a name is unique among an owner's own
    functions and among a project's."""

    __tablename__ = "functions"
    __table_args__ = (
        UniqueConstraint("owner", "project", "name", name="uq_functions_owner_project_name"),
        Index(
            "uq_functions_project_name",
            "project",
            "name",
            unique=True,
            sqlite_where=text("project <> ''"),
            postgresql_where=text("project <> ''"),
        ),
    )

    pk: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    owner: Mapped[str] = mapped_column(String(64))
    project: Mapped[str] = mapped_column(String(64), default="", server_default="")
    name: Mapped[str] = mapped_column(String(64))
    system: Mapped[str] = mapped_column(String(64))
    spec: Mapped[str] = mapped_column(Text)  # the FunctionCreate as JSON
    service_pk: Mapped[int | None] = mapped_column(Integer)
    # What the pool's workers want in X-Hpcgate-Worker-Secret; None: a pool made before
    # workers had one (they take any request, and none is sent).
    worker_secret: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class InvocationRow(Base):
    """One invocation of a function, written before anything is sent to a worker."""

    __tablename__ = "function_invocations"
    __table_args__ = (
        Index("ix_function_invocations_function", "function_pk", "created_at"),
        # A function's limit on each caller counts the caller's unended invocations of it.
        Index("ix_function_invocations_caller", "function_pk", "caller", "state"),
    )

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    function_pk: Mapped[int] = mapped_column(ForeignKey("functions.pk", ondelete="CASCADE"))
    caller: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(16))
    detached: Mapped[bool] = mapped_column(Boolean, default=False)
    grace_seconds: Mapped[int | None] = mapped_column(Integer)  # detached: None, for ever
    replica_pk: Mapped[int | None] = mapped_column(Integer)
    last_seq: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text)  # InvocationError as JSON
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The API key that started it (None: a full token): a key sees only its own.
    key_id: Mapped[str | None] = mapped_column(String(32), index=True)


class AuditRow(Base):
    """One state-changing request (or WebSocket connect), as the audit log keeps it. Only
    ever inserted; the retention prune is the one delete (see :mod:`hpcgate.audit`)."""

    __tablename__ = "audit"
    __table_args__ = (Index("ix_audit_user_at", "user", "at"),)

    pk: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    user: Mapped[str | None] = mapped_column(String(128))  # None: not authenticated
    token_id: Mapped[str | None] = mapped_column(String(64))
    client: Mapped[str | None] = mapped_column(String(128))  # an OAuth client or an API key
    method: Mapped[str] = mapped_column(String(16))
    route: Mapped[str] = mapped_column(String(256))
    resource: Mapped[str] = mapped_column(String(1024))  # the route's path parameters (JSON)
    status: Mapped[int] = mapped_column(Integer)
    address: Mapped[str | None] = mapped_column(String(64))
    request_id: Mapped[str] = mapped_column(String(64))


class ConsentRow(Base):
    """One consent request (see :mod:`hpcgate.consent`): the credential it holds until its
    user decides, who asked, and the decision."""

    __tablename__ = "consents"

    id: Mapped[str] = mapped_column(String(16), primary_key=True)
    user: Mapped[str] = mapped_column(String(64), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    # The token id held: a new hpcgate token's, or a provider's token's (oidc:...); unique,
    # so two first requests of one token cannot open two requests.
    credential: Mapped[str] = mapped_column(String(64), unique=True)
    scopes: Mapped[str] = mapped_column(String(255))
    client: Mapped[str | None] = mapped_column(String(256))
    asker_user: Mapped[str] = mapped_column(String(128))
    asker_token: Mapped[str] = mapped_column(String(64))
    asker_client: Mapped[str | None] = mapped_column(String(256))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    state: Mapped[str] = mapped_column(String(16))  # pending, approved, denied
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    decided_by: Mapped[str | None] = mapped_column(String(64))  # the deciding token's id
