"""Service operations on behalf of a principal: create, list, read, scale, delete, events,
and finding the replica a proxied request goes to.

A user sees the services declared for it (``users`` holds its name or ``*``) and its own;
any other is indistinguishable from a service that does not exist (404).

A service may also belong to a project: it runs as the member who created it, and the
project's members address it as ``PROJECT~NAME`` (a plain name is never a project's, so
neither shadows the other). A ``viewer`` sees it (get, list, replicas); a ``member`` also
uses it (proxy, ``/v1`` models, events), creates and scales the project's services; an
``owner`` (or an admin) also deletes any of them, a member those it created. The role is
read at each request, so a member removed loses the service with its next one.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Mapping

from sqlalchemy.exc import IntegrityError

from hpcgate.clock import utcnow
from hpcgate.config import ServiceLimits
from hpcgate.jobs.service import JobService
from hpcgate.model.errors import (
    Conflict,
    Forbidden,
    Invalid,
    NoReplica,
    NotFound,
    PayloadTooLarge,
)
from hpcgate.model.principal import Principal, Role, Scope
from hpcgate.model.services import (
    Replica,
    ReplicaState,
    Scale,
    Service,
    ServiceCreate,
    ServiceEvent,
    ServicePatch,
    ServiceSpec,
    qualified_name,
    split_name,
)
from hpcgate.projects import Projects
from hpcgate.services import limits
from hpcgate.services.catalogue import Catalogue, spec_of
from hpcgate.services.events import ServiceEvents
from hpcgate.services.logs import follow_stderr
from hpcgate.services.proxy import Proxy
from hpcgate.services.traffic import Route, Traffic
from hpcgate.store.services import DECLARED, NO_PROJECT, ReplicaStore, ServiceStore
from hpcgate.store.tables import ReplicaRow, ServiceRow
from hpcgate.target import Target

log = logging.getLogger(__name__)


def _replica(row: ReplicaRow, traffic: Traffic) -> Replica:
    try:
        state = ReplicaState(row.state)
    except ValueError:
        state = ReplicaState.FAILED
    return Replica(
        id=row.pk,
        job_id=row.job_id,
        state=state,
        node=row.node,
        address=row.address,
        port=row.port,
        in_flight=traffic.in_flight[row.pk],
        created_at=row.created_at,
        ready_at=row.ready_at,
        last_health_at=row.last_health_at,
        last_health_ok=row.last_health_ok,
        reason=row.reason,
    )


def _pool(name: str) -> bool:
    """A function's pool (``fn.NAME.…``): no name a user gives a service has a dot."""
    return "." in name


def _own(row: ServiceRow) -> bool:
    """A service of its owner's own: in no project, no function's pool."""
    return not row.project and not _pool(row.name)


def _service_project(who: Principal) -> str | None:
    """The project of the service the caller's token is limited to (None: none)."""
    limit = who.restriction
    return None if limit is None or limit.service is None else split_name(limit.service)[0]


def _address(row: ServiceRow) -> str:
    """The name that addresses the service (``PROJECT~NAME`` for a project's)."""
    return qualified_name(row.project, row.name)


class ServiceManager:
    """A user's own service shadows a declared one of the same name, for that user only
    (saying the name is taken would tell who may not use it that it exists)."""

    def __init__(
        self,
        services: ServiceStore,
        replicas: ReplicaStore,
        traffic: Traffic,
        proxy: Proxy,
        events: ServiceEvents,
        users: Mapping[str, list[str]],
        systems: frozenset[str],
        jobs: JobService,
        target: Callable[[ServiceRow, str], Target],
        max_script_bytes: int,
        service_limits: ServiceLimits | None = None,
        projects: Projects | None = None,
    ) -> None:
        self._services = services
        self._projects = projects  # None: no service belongs to a project
        self._catalogue = Catalogue(services)
        self._replicas = replicas
        self._traffic = traffic
        self.proxy = proxy
        self._events = events
        self._users = users  # declared service -> who may use it
        self._systems = systems
        self._jobs = jobs
        self._target = target  # whom a service's jobs run as, on a system
        self._max_script = max_script_bytes
        self._limits = service_limits or ServiceLimits()
        self._changing = asyncio.Lock()  # a limit's check and the write it lets through

    @property
    def version(self) -> int:
        """The service and project stores' counts of writes: what :meth:`usable` gives a
        caller changes only with them (who may use a declared service is configured)."""
        projects = 0 if self._projects is None else self._projects.version
        return self._services.version + projects

    def _may_use(self, who: Principal, row: ServiceRow) -> bool:
        if row.owner:
            return row.owner == who.user
        allowed = self._users.get(row.name, [])
        return who.has(Scope.ADMIN) or "*" in allowed or who.user in allowed

    async def _find(
        self, who: Principal, name: str, scope: Scope, need: Role = Role.VIEWER
    ) -> ServiceRow:
        """For ``NAME``: the caller's own service of that name, else a declared one it may
        use; for ``PROJECT~NAME``: the project's, if the caller's role there is ``need`` or
        more (Forbidden if less, NotFound if none)."""
        who.require(scope)
        project, bare = split_name(name)
        if not who.sees_service(name) or not who.sees_project(project):
            raise NotFound(f"no service {name!r}")
        if project is not None:
            return await self._find_in(who, project, bare, need)
        find = self._catalogue.find
        row = await find(who.user, bare) or await find(DECLARED, bare)
        if row is None or not self._may_use(who, row):
            raise NotFound(f"no service {name!r}")
        return row

    async def _find_in(self, who: Principal, project: str, name: str, need: Role) -> ServiceRow:
        role = await self.project_role(who, project)
        row = await self._catalogue.find_in(project, name)
        if role is None:  # the same whether the project exists or not: no name leaks
            raise NotFound(f"no project {project!r}")
        if row is None:
            raise NotFound(f"no service {qualified_name(project, name)!r}")
        if role.rank < need.rank:
            raise Forbidden(f"a project {role.value} may not do this with its services")
        return row

    async def _owns(self, who: Principal, project: str) -> bool:
        return await self.project_role(who, project) is Role.OWNER

    async def project_role(self, who: Principal, project: str) -> Role | None:
        """The caller's role in the project; an admin's with an unlimited token: owner."""
        if self._projects is None:
            return None
        if who.has(Scope.ADMIN) and who.restriction is None:
            return Role.OWNER
        return await self._projects.role(who, project)

    async def _show(self, row: ServiceRow) -> Service | None:
        try:
            spec = ServiceSpec.model_validate_json(row.spec)
        except ValueError:  # a row no release could read: left out, never a failed list
            log.warning("service %s's stored spec cannot be read: not shown", row.pk)
            return None
        spec = spec.model_copy(
            update={"min_replicas": row.min_replicas, "max_replicas": row.max_replicas}
        )
        replicas = [_replica(r, self._traffic) for r in await self._replicas.of(row.pk)]
        return Service(
            name=row.name,
            owner=row.owner or None,
            project=row.project or None,
            stopping=row.stopping,
            problem=self._events.problem(row.pk),
            spec=spec,
            replicas=replicas,
        )

    async def usable(self, who: Principal) -> list[ServiceRow]:
        """The rows of the services the caller may use: its own first, then declared ones,
        then those of the projects where it is a member or an owner."""
        who.require(Scope.JOBS_READ)
        declared = [r for r in await self._catalogue.owned(DECLARED) if self._may_use(who, r)]
        rows = await self._catalogue.owned(who.user) + declared
        if not who.sees_project(None):
            rows = []  # a token limited to a project: that project's alone
        if self._projects is not None:
            roles = await self._projects.roles(who)
            users = {p for p, role in roles.items() if role.rank >= Role.MEMBER.rank}
            rows += await self._catalogue.in_projects(users)
        return [row for row in rows if who.sees_service(_address(row))]  # a token for one: it

    async def may_use_now(self, who: Principal, row: ServiceRow) -> bool:
        """Whether the caller may use a service :meth:`usable` gave it, as of now: a
        project's role is read again (the ``/v1`` tables are kept until a write through
        this gateway; a member removed by another gateway on the database, or by the
        server's command line, must not keep the project's models until then)."""
        if not row.project:
            return True
        role = await self.project_role(who, row.project)
        return role is not None and role.rank >= Role.MEMBER.rank

    async def list(self, who: Principal, project: str | None = None) -> list[Service]:
        """Those declared for the caller and its own, but its functions' pools (shown with
        their function: no service route could name one); with ``project`` (or a token
        limited to a project's service), that project's (a viewer's role is enough)."""
        who.require(Scope.JOBS_READ)
        project = project or _service_project(who)
        if project is not None:
            seen = await self._of_project(who, project)
        elif not who.sees_project(None):
            seen = []  # a token limited to a project: none of the caller's own
        else:
            declared = [r for r in await self._services.owned(DECLARED) if self._may_use(who, r)]
            own = [r for r in await self._services.owned(who.user) if _own(r)]
            seen = [row for row in declared + own if who.sees_service(row.name)]
        shown = [await self._show(row) for row in seen]
        return [service for service in shown if service is not None]

    async def _of_project(self, who: Principal, project: str) -> builtins.list[ServiceRow]:
        if await self.project_role(who, project) is None:
            raise NotFound(f"no project {project!r}")
        rows = await self._services.of_project(project)
        return [row for row in rows if who.sees_service(_address(row))]

    async def every(self, who: Principal) -> builtins.list[Service]:
        """Every user's services and the declared ones (the admin scope only, with a token
        limited to nothing: one limited to a project or a service would see past it), but
        the functions' pools."""
        who.unrestricted()
        who.require(Scope.ADMIN)
        if who.restriction is not None:
            raise Forbidden("every user's services: only with a token limited to nothing")
        rows = [row for row in await self._services.every() if not _pool(row.name)]
        shown = [await self._show(row) for row in rows]
        return [service for service in shown if service is not None]

    async def get(self, who: Principal, name: str) -> Service:
        service = await self._show(await self._find(who, name, Scope.JOBS_READ))
        if service is None:
            raise NotFound(f"no service {name!r}")
        return service

    async def create(self, who: Principal, spec: ServiceCreate) -> Service:
        """A service of the caller's own, or of a project it may create in (member or
        owner), running as the caller."""
        who.require(Scope.JOBS_WRITE)
        await self._may_create_in(who, spec.project)
        if spec.system not in self._systems:
            raise NotFound(f"no system {spec.system!r}")
        if spec.script is not None and len(spec.script.encode()) > self._max_script:
            raise PayloadTooLarge(f"the script exceeds the limit of {self._max_script} bytes")
        body = ServiceSpec.model_validate(spec.model_dump(exclude={"name", "project"}))
        try:
            await self.add_owned(who.user, spec.name, body, spec.project or NO_PROJECT)
        except IntegrityError:
            whose = f"project {spec.project!r} has" if spec.project else "you already have"
            raise Conflict(f"{whose} a service {spec.name!r}") from None
        return await self.get(who, qualified_name(spec.project, spec.name))

    async def _may_create_in(self, who: Principal, project: str | None) -> None:
        if project is None:
            if not who.sees_project(None):
                raise Forbidden("this token is limited to a project: create the service in it")
            return
        if self._projects is None:
            raise NotFound(f"no project {project!r}")
        await self._projects.require(who, project, Scope.JOBS_WRITE)

    async def add_owned(
        self, owner: str, name: str, body: ServiceSpec, project: str = NO_PROJECT
    ) -> ServiceRow:
        """A service row of ``owner``'s (in ``project`` if one is named), held to its
        limits (IntegrityError if the name is taken). Functions name their pools so
        (``fn.NAME.…``) that no name a user gives a service can be theirs."""
        row = ServiceRow(
            name=name,
            owner=owner,
            project=project,
            spec=body.model_dump_json(),
            min_replicas=body.min_replicas,
            max_replicas=body.max_replicas,
            stopping=False,
            created_at=utcnow(),
        )
        async with self._changing:
            limits.check_create(self._limits, await self._services.owned(owner), body)
            await self._services.add(row)
        self._traffic.wake.set()
        return row

    async def by_pk(self, owner: str, pk: int) -> Service | None:
        """``owner``'s service of that key, as the API shows it (a function's pool)."""
        rows = [row for row in await self._catalogue.owned(owner) if row.pk == pk]
        return await self._show(rows[0]) if rows else None

    async def stop_owned(self, pk: int) -> None:
        """Stop a service by its key: its replicas drain, then it is gone (a function's pool)."""
        await self._services.update(pk, stopping=True)
        self._traffic.wake.set()

    def _may_change(self, who: Principal, row: ServiceRow) -> None:
        if not row.owner and not who.has(Scope.ADMIN):
            raise Forbidden("only an admin changes a service declared in the configuration")

    async def scale(self, who: Principal, name: str, patch: ServicePatch) -> Service:
        async with self._changing:
            row = await self._find(who, name, Scope.JOBS_WRITE, Role.MEMBER)
            self._may_change(who, row)
            low = row.min_replicas if patch.min_replicas is None else patch.min_replicas
            high = row.max_replicas if patch.max_replicas is None else patch.max_replicas
            try:
                Scale(min_replicas=low, max_replicas=high)
            except ValueError:
                detail = f"min_replicas ({low}) must not exceed max_replicas ({high})"
                raise Invalid(detail) from None
            limits.check_scale(self._limits, await self._services.owned(row.owner), row, high)
            await self._services.update(row.pk, min_replicas=low, max_replicas=high)
        self._traffic.wake.set()
        return await self.get(who, name)

    async def delete(self, who: Principal, name: str) -> Service:
        """Stop the service: its replicas drain, their jobs are cancelled, then it is gone
        (a project's: by an owner of the project, or the member who created it)."""
        row = await self._find(who, name, Scope.JOBS_WRITE, Role.MEMBER)
        self._may_change(who, row)
        if row.project and row.owner != who.user and not await self._owns(who, row.project):
            raise Forbidden("only an owner of the project deletes a service another made")
        if not row.owner:
            raise Conflict(
                f"{name!r} is declared in the configuration: PATCH max_replicas to 0 to stop it"
            )
        await self._services.update(row.pk, stopping=True)
        self._traffic.wake.set()
        return await self.get(who, name)

    async def events(self, who: Principal, name: str) -> AsyncIterator[ServiceEvent]:
        """The service's events from now on, with its live replicas' stderr from their
        start: to its owner (an admin for a declared one)."""
        row = await self._find(who, name, Scope.JOBS_READ, Role.MEMBER)
        if not row.owner:
            self._may_change(who, row)
        spec = ServiceSpec.model_validate_json(row.spec)
        return self._follow(row, spec, self._events.open(row.pk))  # from this moment on

    async def _follow(
        self, row: ServiceRow, spec: ServiceSpec, queue: asyncio.Queue[ServiceEvent]
    ) -> AsyncIterator[ServiceEvent]:
        target = self._target(row, spec.system)
        stderr = follow_stderr(self._jobs, target, self._replicas, row.pk, queue)
        follower = asyncio.create_task(stderr)
        try:
            while True:
                yield await queue.get()
        finally:
            follower.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await follower
            self._events.close(row.pk, queue)

    async def route(self, who: Principal, name: str) -> tuple[Route, ServiceSpec]:
        """The ready replica a request to the service goes to (waiting for one if need be),
        and the service's spec."""
        row = await self._find(who, name, Scope.JOBS_READ, Role.MEMBER)
        return await self.routed(row), spec_of(row.spec)

    async def routed(self, row: ServiceRow) -> Route:
        """A ready replica of the service (waiting as the proxy does); a NoReplica that
        tells the service's problem, when it has one (rather than that one is starting)."""
        try:
            return await self.proxy.route(row.pk, _address(row))
        except NoReplica as exc:
            problem = self._events.problem(row.pk)
            if problem is None:
                raise
            detail = f"service {_address(row)!r} has no ready replica: {problem}"
            raise NoReplica(detail, exc.retry_after, **exc.extra) from None
