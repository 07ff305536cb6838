"""The gateway's parts wired together: the one place that knows how they fit."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from hpcgate.accounts import Accounts, multi_user
from hpcgate.audit import AuditLog
from hpcgate.config import Settings
from hpcgate.consent import Consents
from hpcgate.factory import build_clusters
from hpcgate.files.bulk import BulkFiles
from hpcgate.files.extraction import ExtractLimits
from hpcgate.files.resumable import ResumableUploads
from hpcgate.files.service import FileService
from hpcgate.functions.invocations import Invocations
from hpcgate.functions.registry import Registry
from hpcgate.functions.retention import Pruner, Retention
from hpcgate.functions.workers import Workers
from hpcgate.homedir import closed_ancestors, open_home
from hpcgate.homelock import HomeLock
from hpcgate.housekeeping import Chore, Housekeeping
from hpcgate.identity.service import Identity
from hpcgate.jobs.events import EventBus
from hpcgate.jobs.service import JobService
from hpcgate.jobs.watcher import JobWatcher, first_polls
from hpcgate.leadership import Leadership
from hpcgate.model.errors import NotFound
from hpcgate.model.principal import Principal, Role, Scope
from hpcgate.model.services import PROJECT_SEPARATOR
from hpcgate.projects import Projects
from hpcgate.ratelimits import RateLimits, prune_windows
from hpcgate.services.controller import Options, ServiceController
from hpcgate.services.events import ServiceEvents
from hpcgate.services.openai import OpenAIRoutes
from hpcgate.services.pool import Pools
from hpcgate.services.proxy import Proxy
from hpcgate.services.quotas import TokenQuota
from hpcgate.services.service import ServiceManager
from hpcgate.services.traffic import Traffic
from hpcgate.services.usage import UsageLedger
from hpcgate.status.service import StatusService
from hpcgate.store.audit import AuditStore
from hpcgate.store.consents import ConsentStore
from hpcgate.store.db import Database
from hpcgate.store.functions import FunctionStore, InvocationStore
from hpcgate.store.jobs import JobStore
from hpcgate.store.projects import ProjectStore
from hpcgate.store.services import DECLARED, ReplicaStore, ServiceStore
from hpcgate.store.tasks import TaskStore
from hpcgate.store.tokens import TokenStore
from hpcgate.store.uploads import UploadStore
from hpcgate.store.usage import UsageStore
from hpcgate.systems import Systems
from hpcgate.target import Target
from hpcgate.tasks.service import TaskService
from hpcgate.tokens import TokenService
from hpcgate.transports.agent_hub import AgentHub

log = logging.getLogger("hpcgate")

ADMIN_USER = "admin"
FUNCTIONS = "functions"  # the token id of a function's owner acting for its workers


class Gateway:
    """Holds every service. Construction does no I/O; :meth:`start` connects and watches.

    Construction raises ValueError for a configuration that cannot run safely.
    """

    def __init__(self, settings: Settings, database: Database | None = None) -> None:
        self.settings = settings
        self.home_lock = HomeLock(settings.home)
        self.database = database or Database(settings.database_url)
        self.function_store = FunctionStore(self.database)
        self.tokens = TokenService(
            TokenStore(self.database),
            settings.home / "tokens.revoked",
            settings.token_cache_seconds,
            owns=self._may_key,
            systems=frozenset(settings.systems),
        )
        self.projects = Projects(ProjectStore(self.database))
        self.rate_limits = RateLimits(settings.rate_limits)
        self.identity = Identity(settings.auth.oidc)
        self.audit = AuditLog(AuditStore(self.database), settings.audit)
        self.consents = Consents(
            ConsentStore(self.database),
            settings.consent,
            self._token_parent,
            self.tokens.revoke,
            settings.token_cache_seconds,
        )
        self.leadership = Leadership(self.database.url, settings.leader_seconds)
        self.agents = AgentHub()
        self.systems = Systems(build_clusters(settings, self.agents))
        self.accounts = Accounts(settings.users, multi_user(settings.users, self.systems.per_user))
        self.systems.check_identity(self.accounts.multi)
        self.bus = EventBus()
        store = JobStore(self.database)
        self.jobs = JobService(store, self.bus, settings.max_script_bytes, self.projects)
        self.status = StatusService(self.accounts)
        self.files = FileService(self.projects)
        self.uploads = ResumableUploads(self.files, UploadStore(self.database))
        self.tasks = TaskService(TaskStore(self.database))
        limits = ExtractLimits(settings.max_extract_members, settings.max_extract_bytes)
        self.bulk = BulkFiles(self.files, self.tasks, limits)
        self.watchers = [
            JobWatcher(cluster, store, self.bus, self.accounts) for cluster in self.systems
        ]
        self._build_services(store)

    def _build_services(self, jobs: JobStore) -> None:
        settings = self.settings
        if self.accounts.multi and any(s.run_as is None for s in settings.services.values()):
            raise ValueError("in multi-user mode every [services.NAME] needs run_as")
        self.service_store = ServiceStore(self.database)
        replicas = ReplicaStore(self.database)
        traffic, events = Traffic(), ServiceEvents()
        run_as = {name: service.run_as for name, service in settings.services.items()}
        options = Options(
            settings.service_ports, settings.service_interval, run_as, settings.service_limits
        )
        pools = Pools()
        self.controller = ServiceController(
            self.service_store,
            replicas,
            self.jobs,
            jobs,
            self.target,
            traffic,
            pools,
            events,
            options,
            self.leadership.leads,
        )
        users = {name: service.users for name, service in settings.services.items()}
        proxy = Proxy(traffic, settings.service_wait_seconds)
        names = frozenset(cluster.name for cluster in self.systems)
        self.services = ServiceManager(
            self.service_store,
            replicas,
            traffic,
            proxy,
            events,
            users,
            names,
            self.jobs,
            lambda row, system: self.target(self.controller.principal(row), system),
            settings.max_script_bytes,
            settings.service_limits,
            self.projects,
        )
        usage = UsageStore(self.database)
        quota = TokenQuota(self.rate_limits, usage)
        self.openai = OpenAIRoutes(self.services, proxy, UsageLedger(usage), quota)
        workers = Workers(traffic, pools, replicas, self._owner_on, settings.service_wait_seconds)
        self.functions = Registry(
            self.function_store, self.services, names, settings.max_script_bytes, self.projects
        )
        invocations = InvocationStore(self.database)
        self.invocations = Invocations(self.functions, invocations, workers, self.rate_limits)
        kept = settings.functions
        retention = Retention(kept.keep_invocations_days, kept.keep_invocations, kept.prune_seconds)
        self.pruner = Pruner(invocations, retention)
        self.housekeeping = Housekeeping(self._chores(), self.leadership.leads)

    def _chores(self) -> list[Chore]:
        """What the housekeeping sees to, and how often."""
        settings = self.settings
        windows = float(settings.rate_limits.window_seconds)
        return [
            Chore("ended invocations", self.pruner.prune, settings.functions.prune_seconds),
            Chore("old consent requests", self.consents.prune, settings.consent.prune_seconds),
            Chore(
                "unused rate-limit windows",
                lambda: prune_windows(self.rate_limits),
                windows,
                shared=False,
            ),
        ]

    def _owner_on(self, owner: str, system: str) -> Target:
        """A function's owner on its system: whom its workers run as."""
        scopes = frozenset({Scope.JOBS_READ, Scope.JOBS_WRITE})
        return self.target(Principal(owner, scopes, token_id=FUNCTIONS), system)

    async def authenticate(self, presented: str, keys: bool = False) -> Principal:
        """The caller behind a bearer token: a trusted provider's (``[auth.oidc]``) or one
        of hpcgate's own (an API key only where the route takes ``keys``); Unauthenticated
        for anything else, ConsentPending for a credential waiting for its user's consent."""
        if self.identity.handles(presented):
            who = await self.identity.authenticate(presented)
        else:
            who = await self.tokens.authenticate(presented, keys=keys)
        await self.consents.admit(who)  # a credential held for consent does not act
        return who

    async def _may_key(self, maker: Principal, user: str, name: str) -> bool:
        """Whether an API key of ``user``'s, made by ``maker``, may name the function
        ``name``: one of that user's own, or ``PROJECT~NAME`` of a project the user owns
        (and makes the key for itself: a role is read from its own credential)."""
        project, separator, bare = name.rpartition(PROJECT_SEPARATOR)
        if not separator:
            return await self.function_store.owns(user, name)
        if maker.user != user or await self.function_store.find_in(project, bare) is None:
            return False
        return await self.projects.role(maker, project) is Role.OWNER

    async def _token_parent(self, token_id: str) -> str | None:
        row = await self.tokens.get(token_id)
        return None if row is None else row.parent_id

    def target(self, who: Principal, system: str) -> Target:
        """The caller on ``system`` (NotFound if there is no such system, or the caller's
        token is limited to another)."""
        if not who.sees_system(system):
            raise NotFound(f"no system named {system!r}")
        return Target(who, self.systems.get(system), self.accounts)

    async def open_store(self) -> None:
        """Create the data directory and bring the database schema up to date."""
        self.settings.home.mkdir(parents=True, exist_ok=True, mode=0o700)
        await self.database.start()

    def open_home(self) -> None:
        """In multi-user mode, let the accounts pass through the home to their own
        directories, and nowhere else (see :mod:`hpcgate.homedir`); warn if they cannot."""
        if not self.accounts.multi:
            return
        open_home(self.settings.home)
        closed = closed_ancestors(self.settings.home)
        if closed:
            log.warning(
                "the users' accounts cannot pass through %s (no search permission for others),"
                " so they cannot reach their directories under %s: their jobs fail until it is"
                " opened (chmod o+x) or HPCGATE_HOME is elsewhere",
                closed[0],
                self.settings.home / "work",
            )

    def lock_home(self) -> None:
        """Make the home this gateway's for the life of the process: HomeInUse at once if
        another gateway has it (see :mod:`hpcgate.homelock`)."""
        self.home_lock.acquire()

    async def start(self) -> None:
        self.lock_home()  # before anything is touched: recover() would fail another's tasks
        await self.open_store()
        self.audit.start()
        await self.consents.start()
        self.open_home()
        await self.ensure_admin_token()
        await self.tasks.recover()
        for cluster in self.systems:
            await cluster.transport.start()
        await first_polls(self.watchers)
        await self.declare_services()
        await self.leadership.start()
        self.controller.start()
        await self.invocations.recover()
        self.housekeeping.start()

    async def declare_services(self) -> None:
        """Bring the declared services' rows in line with the configuration: a service
        no longer declared is stopped (drained) like a deleted one."""
        declared = self.settings.services
        for name, service in declared.items():
            spec = service.model_dump_json(exclude={"users", "run_as"})
            await self.service_store.declare(name, spec, service.min_replicas, service.max_replicas)
        for row in await self.service_store.owned(DECLARED):
            if row.name not in declared:
                await self.service_store.update(row.pk, stopping=True)

    async def stop(self) -> None:
        await self.housekeeping.stop()
        await self.invocations.stop()
        await self.controller.stop()
        await self.leadership.stop()
        await self.openai.ledger.flush()
        for watcher in self.watchers:
            await watcher.stop()
        await self.tasks.stop()
        for cluster in self.systems:
            await cluster.transport.close()
        await self.identity.close()
        await self.audit.stop()
        await self.database.close()

    @property
    def admin_token_file(self) -> Path:
        return self.settings.home / "admin-token"

    async def ensure_admin_token(self) -> None:
        """On the very first start, create an admin token and say once where it is."""
        if await self.tokens.list(ADMIN_USER):
            return
        issued = await self.tokens.create(
            ADMIN_USER, frozenset({Scope.ADMIN}), description="created on first start"
        )
        fd = os.open(self.admin_token_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(issued.secret + "\n")
        log.warning(
            "first start: an admin token was written to %s (mode 0600). Read it with: cat %s",
            self.admin_token_file,
            self.admin_token_file,
        )
