"""Registered functions: register (the code compiled, the schema checked, the pool made a
service of the owner's), find, show and remove.

A user finds its own function of a name first, else the oldest of that name another user
shares with it (``users`` holds its name or ``*``); any other is indistinguishable from a
function that does not exist (404). An API key finds only the functions it names, of its
own user's, and is never their owner: it sees neither their source nor their workers, nor
tracebacks.

A function may belong to a project: it runs as the member who registered it (its owner),
and the project's members address it as ``PROJECT~NAME`` (a plain name or ``OWNER:NAME``
is never a project's). A ``viewer`` sees it; a ``member`` also invokes it (and reads the
invocations it started); its owner, as for any function, sees its source, workers and
every invocation; an owner of the project may also delete it. No API key reaches one yet.
"""

from __future__ import annotations

import asyncio
import functools
import secrets
from dataclasses import dataclass

from sqlalchemy.exc import IntegrityError

from hpcgate.clock import utcnow
from hpcgate.functions import schemas
from hpcgate.functions.script import job_script, new_secret, worker_source
from hpcgate.model.errors import Conflict, Forbidden, Invalid, NotFound, PayloadTooLarge
from hpcgate.model.functions import Function, FunctionCreate, FunctionSettings
from hpcgate.model.principal import Principal, Role, Scope
from hpcgate.model.services import PROJECT_SEPARATOR, ServiceSpec, qualified_name
from hpcgate.projects import Projects
from hpcgate.services.service import ServiceManager
from hpcgate.store.functions import FunctionStore
from hpcgate.store.tables import FunctionRow

HEALTH_PATH = "/health"
SCRIPT_MAX = 1 << 20  # what a service's script may hold (ServiceSpec.script)
POOL_PREFIX = "fn."  # a pool's service name: no name a user gives a service has a dot


@dataclass(frozen=True, slots=True)
class Found:
    """A function and its registration."""

    row: FunctionRow
    spec: FunctionCreate

    def owned_by(self, who: Principal) -> bool:
        """Whether ``who`` is its owner (with a full token: a key of the owner's is not)."""
        return self.row.owner == who.user and not who.is_key


@functools.lru_cache(maxsize=1024)
def _spec(text: str) -> FunctionCreate:
    """A stored registration, parsed once per distinct text (shared: never change it)."""
    return FunctionCreate.model_validate_json(text)


def pool_name(name: str) -> str:
    return f"{POOL_PREFIX}{name}.{secrets.token_hex(3)}"


class Registry:
    def __init__(
        self,
        store: FunctionStore,
        services: ServiceManager,
        systems: frozenset[str],
        max_script_bytes: int,
        projects: Projects | None = None,
    ) -> None:
        self._store = store
        self._services = services
        self._systems = systems
        self._max_script = min(max_script_bytes, SCRIPT_MAX)
        self._projects = projects  # None: no function belongs to a project

    async def create(self, who: Principal, spec: FunctionCreate) -> Function:
        """Register the caller's function (in a project it may create in: member or
        owner) and make its pool (a service of the caller's)."""
        who.unrestricted()
        who.require(Scope.JOBS_WRITE)
        await self._may_create_in(who, spec.project)
        if spec.system not in self._systems:
            raise NotFound(f"no system {spec.system!r}")
        schemas.check(spec.input_schema)
        if spec.source is not None:
            await asyncio.to_thread(_compiles, spec.name, spec.source)
        secret = new_secret()
        pool = self._pool(spec, secret)
        row = FunctionRow(
            owner=who.user,
            project=spec.project or "",
            name=spec.name,
            system=spec.system,
            spec=spec.model_dump_json(),
            worker_secret=secret,
            created_at=utcnow(),
        )
        try:
            await self._store.add(row)
        except IntegrityError:
            whose = f"project {spec.project!r} has" if spec.project else "you already have"
            raise Conflict(f"{whose} a function {spec.name!r}") from None
        try:
            service = await self._services.add_owned(who.user, pool_name(spec.name), pool)
        except BaseException:
            await self._store.remove(row.pk)
            raise
        await self._store.update(row.pk, service_pk=service.pk)
        row.service_pk = service.pk
        return await self.show(who, Found(row, spec))

    async def _may_create_in(self, who: Principal, project: str | None) -> None:
        if project is None:
            if not who.sees_project(None):
                raise Forbidden("this token is limited to a project: register the function in it")
            return
        if self._projects is None:
            raise NotFound(f"no project {project!r}")
        await self._projects.require(who, project, Scope.JOBS_WRITE)

    async def project_role(
        self, who: Principal, project: str, name: str | None = None
    ) -> Role | None:
        """The caller's role in the project; an admin's with an unlimited token: owner; a
        key's: its user's, for the project's function ``name`` the key names, else none."""
        if self._projects is None:
            return None
        if who.is_key:
            named = name is not None and who.may_call_in(qualified_name(project, name))
            return await self._projects.role(who, project) if named else None
        if who.has(Scope.ADMIN) and who.restriction is None:
            return Role.OWNER
        return await self._projects.role(who, project)

    def _pool(self, spec: FunctionCreate, secret: str) -> ServiceSpec:
        """The pool's service: the generated script (with the pool's worker secret),
        scaled by the function's settings."""
        script = job_script(spec, worker_source(), secret)
        if len(script.encode()) > self._max_script:
            raise PayloadTooLarge(
                f"the function's worker script would exceed the limit of {self._max_script}"
                " bytes: make the source smaller, or install it and give 'entry'"
            )
        return ServiceSpec(
            system=spec.system,
            script=script,
            min_replicas=spec.min_workers,
            max_replicas=spec.max_workers,
            target_in_flight=spec.max_concurrency,
            idle_seconds=spec.idle_seconds,
            health_path=HEALTH_PATH,
            time_limit=spec.time_limit,
            partition=spec.partition,
            account=spec.account,
            cpus_per_task=spec.cpus_per_task,
            memory=spec.memory,
            gpus=spec.gpus,
        )

    async def find(self, who: Principal, ref: str, need: Role = Role.VIEWER) -> Found:
        """The function ``ref`` names: ``OWNER:NAME``, or ``NAME`` for the caller's own,
        else the one function of that name shared with it (409 if several users share one
        of that name: which is meant is never guessed); ``PROJECT~NAME``: the project's,
        if the caller's role there is ``need`` or more (Forbidden if less)."""
        who.require(Scope.JOBS_READ)
        project, separator, bare = ref.rpartition(PROJECT_SEPARATOR)
        if separator:
            return await self._find_in(who, project, bare, need)
        if not who.sees_project(None):
            raise NotFound(f"no function {ref!r}")
        owner, _, name = ref.rpartition(":")
        if not who.may_call(owner or who.user, name):  # a key: its own functions only
            raise NotFound(f"no function {ref!r}")
        if owner:
            row = await self._store.find(owner, name)
            found = None if row is None else Found(row, _spec(row.spec))
            if found is None or not (found.owned_by(who) or _shared_with(found, who)):
                raise NotFound(f"no function {ref!r}")
            return found
        own = await self._store.find(who.user, name)
        if own is not None:
            return Found(own, _spec(own.spec))
        if who.is_key:
            raise NotFound(f"no function {ref!r}")
        return _one_shared(name, await self._store.named(name), who)

    async def _find_in(self, who: Principal, project: str, name: str, need: Role) -> Found:
        role = await self.project_role(who, project, name)
        row = await self._store.find_in(project, name)
        if role is None:  # the same whether the project exists or not: no name leaks
            raise NotFound(f"no project {project!r}")
        if row is None:
            raise NotFound(f"no function {qualified_name(project, name)!r}")
        if role.rank < need.rank:
            raise Forbidden(f"a project {role.value} may not do this with its functions")
        return Found(row, _spec(row.spec))

    async def by_pk(self, pk: int) -> Found | None:
        row = await self._store.by_pk(pk)
        return None if row is None else Found(row, _spec(row.spec))

    async def owned(self, who: Principal, name: str) -> Found:
        """The caller's own function of that name, or a project's it owns the project of
        (404 for any other; 403 for another's in a project where it is a member)."""
        found = await self.find(who, name, Role.MEMBER)
        if found.owned_by(who):
            return found
        project = found.row.project
        if project and not who.is_key and await self.project_role(who, project) is Role.OWNER:
            return found
        if project:
            raise Forbidden(f"only its owner or an owner of {project!r} does this")
        raise NotFound(f"no function {name!r} of yours")

    async def list(self, who: Principal, project: str | None = None) -> list[Function]:
        """The caller's functions and those shared with it (none of a project's); with
        ``project``, that project's (any role)."""
        who.require(Scope.JOBS_READ)
        rows = [Found(row, _spec(row.spec)) for row in await self._store.all()]
        if project is not None:
            if await self.project_role(who, project) is None:
                raise NotFound(f"no project {project!r}")
            seen = [f for f in rows if f.row.project == project]
        elif not who.sees_project(None):
            seen = []  # a token limited to a project: none of the caller's own
        else:
            seen = [f for f in rows if not f.row.project and _visible_to(f, who)]
        return [await self.show(who, found) for found in seen]

    async def show(self, who: Principal, found: Found) -> Function:
        spec, row = found.spec, found.row
        settings = FunctionSettings.model_validate(spec.model_dump(include=_SETTINGS))
        shown = Function(
            name=row.name,
            owner=row.owner,
            project=row.project or None,
            system=row.system,
            callable=spec.target(),
            entry=spec.entry,
            input_schema=spec.input_schema,
            settings=settings,
            created_at=row.created_at,
        )
        if not found.owned_by(who):
            return shown.model_copy(update={"settings": settings.model_copy(update={"users": []})})
        return await self._with_pool(who, row, shown.model_copy(update={"source": spec.source}))

    async def _with_pool(self, who: Principal, row: FunctionRow, shown: Function) -> Function:
        if row.service_pk is None:
            return shown
        service = await self._services.by_pk(row.owner, row.service_pk)
        if service is None:
            return shown
        return shown.model_copy(update={"workers": service.replicas, "problem": service.problem})

    async def remove(self, found: Found) -> None:
        """Forget the function (and its invocations); its pool drains and stops."""
        await self._store.remove(found.row.pk)
        if found.row.service_pk is not None:
            await self._services.stop_owned(found.row.service_pk)


_SETTINGS = set(FunctionSettings.model_fields)


def _one_shared(name: str, rows: list[FunctionRow], who: Principal) -> Found:
    shared = [f for f in (Found(row, _spec(row.spec)) for row in rows) if _shared_with(f, who)]
    if not shared:
        raise NotFound(f"no function {name!r}")
    if len(shared) > 1:
        owners = ", ".join(sorted(f.row.owner for f in shared))
        raise Conflict(
            f"several users share a function {name!r} with you ({owners}):"
            f" name the one you mean as OWNER:{name}"
        )
    return shared[0]


def _visible_to(found: Found, who: Principal) -> bool:
    return found.owned_by(who) or _shared_with(found, who) or _keyed(found, who)


def _shared_with(found: Found, who: Principal) -> bool:
    users = found.spec.users
    shared = "*" in users or who.user in users
    return shared and not who.is_key


def _keyed(found: Found, who: Principal) -> bool:
    """Whether ``who`` is a key for this function."""
    return who.is_key and who.may_call(found.row.owner, found.row.name)


def _compiles(name: str, source: str) -> None:
    """Invalid (422, with the line) unless the source compiles; it is never run here."""
    try:
        compile(source, f"<function {name}>", "exec", dont_inherit=True)
    except SyntaxError as exc:
        where = f"line {exc.lineno}" + (f", column {exc.offset}" if exc.offset else "")
        detail = f"the source does not compile: {exc.msg} ({where})"
        raise Invalid(detail, line=exc.lineno) from None
    except (ValueError, RecursionError, MemoryError) as exc:
        raise Invalid(f"the source does not compile: {type(exc).__name__}") from None
