"""The service controller: one reconciler per gateway, started like the job watcher.
Where gateways share a database, only the one that leads (:mod:`hpcgate.leadership`)
acts; the others only follow: they route to the replicas it made ready.

Each round it looks at every service: its replicas' jobs (as the job watcher recorded
them), where each runs, whether each answers its health check; it marks replicas ready or
failed, sets the proxy's routing table, and starts and drains replicas by the rules of
:mod:`hpcgate.services.rules`. Everything it knows is in the store and the scheduler, so a
restarted gateway finds its running replicas again. One bad service or row is logged once
and skipped: it never stops the others. What keeps a service from the replicas it wants
(its account, its owner's limits of :mod:`hpcgate.services.limits`, no free port, an error)
is its problem, shown to its users. A replica is ready only while its port is its
account's, where the node's sockets can be seen (:mod:`hpcgate.services.ports`).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

from hpcgate.accounts import Account
from hpcgate.clock import utcnow
from hpcgate.config import ServiceLimits
from hpcgate.jobs.service import JobService
from hpcgate.model.errors import HpcgateError
from hpcgate.model.jobs import JobState
from hpcgate.model.principal import Principal, Scope
from hpcgate.model.services import ReplicaState, ServiceEvent, ServiceSpec, qualified_name
from hpcgate.services import limits, metrics, ports
from hpcgate.services import replicas as jobs_of
from hpcgate.services.events import ServiceEvents
from hpcgate.services.pool import Pools
from hpcgate.services.proxy import healthy
from hpcgate.services.rules import Plan, Rules, Seen, backoff, plan
from hpcgate.services.traffic import Route, Traffic
from hpcgate.store.jobs import JobStore
from hpcgate.store.services import ReplicaStore, ServiceStore
from hpcgate.store.tables import JobRow, ReplicaRow, ServiceRow
from hpcgate.target import Target

log = logging.getLogger(__name__)

SERVICE_USER = "hpcgate-services"  # whose jobs a declared service's are, with no run_as
HEALTH_MISSES = 3  # failed health checks in a row that fail a ready replica
JOBLESS_SECONDS = 120.0  # a replica whose submit left no job id this long has failed
KEEP_ENDED = 20  # ended replicas kept per service, to show
PATIENCE = 2.0  # seconds a round waits for its services before it lets slow ones run on


@dataclass(slots=True)
class _Memory:
    """What the controller remembers of a service between rounds (lost on restart)."""

    failures: int = 0
    next_start: float = 0.0
    misses: Counter[int] = field(default_factory=Counter)


@dataclass(frozen=True, slots=True)
class Options:
    ports: tuple[int, int]
    interval: float
    run_as: Mapping[str, str | None]  # declared service name -> its run_as
    limits: ServiceLimits = field(default_factory=ServiceLimits)


class _Blocked(Exception):
    """The service cannot be reconciled this round, for a reason its owner is shown."""


@dataclass(slots=True)
class _Round:
    """One service in one round: its row, spec and whom it runs as."""

    row: ServiceRow
    spec: ServiceSpec
    target: Target
    account: Account | None
    memory: _Memory
    problem: str | None = None  # what keeps it from the replicas it wants, this round


def _state(text: str) -> ReplicaState:
    try:
        return ReplicaState(text)
    except ValueError:  # a row no release wrote: read as ended, never a crash
        return ReplicaState.FAILED


def _expires_in(job: JobRow | None, now: datetime) -> float | None:
    if job is None or job.start_time is None or not job.time_limit:
        return None
    return job.time_limit - (now - job.start_time).total_seconds()


class ServiceController:
    def __init__(
        self,
        services: ServiceStore,
        replicas: ReplicaStore,
        jobs: JobService,
        job_rows: JobStore,
        target: Callable[[Principal, str], Target],
        traffic: Traffic,
        pools: Pools,
        events: ServiceEvents,
        options: Options,
        leads: Callable[[], bool] = lambda: True,
    ) -> None:
        self._services = services
        self._replicas = replicas
        self._jobs = jobs
        self._job_rows = job_rows
        self._target = target
        self.traffic = traffic
        self._pools = pools
        self._events = events
        self._options = options
        self._memory: dict[int, _Memory] = {}
        self._addresses: dict[str, dict[str, str]] = {}
        self._live: Counter[str] = Counter()  # live replicas of each owner's services
        self._task: asyncio.Task[None] | None = None
        self._busy: dict[str | int, asyncio.Task[None]] = {}  # see tick()
        self._leads = leads  # whether this gateway acts (see hpcgate.leadership)
        self._followed: dict[int, set[int]] = {}  # service -> replicas routed, not leading

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="service-controller")

    async def stop(self) -> None:
        for task in [self._task, *self._busy.values()]:
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        await self._pools.close_all()

    async def _loop(self) -> None:
        while True:
            self.traffic.wake.clear()
            try:
                await self.tick(PATIENCE)
            except Exception:  # the loop must outlive any one bad round
                log.exception("the service controller's round failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.traffic.wake.wait(), self._options.interval)

    async def tick(self, patience: float | None = None) -> None:
        """One round over every service: each owner's services in turn (its limits are
        counted as they start), the owners and each declared service side by side. The
        round waits ``patience`` seconds (None: until all are done); a service still being
        reconciled then (its system does not answer and its calls wait out their timeouts)
        goes on alone, and later rounds pass it by until it is done: it holds up no other."""
        self._addresses = {}
        self._live = await self._replicas.live_by_owner()
        self._busy = {key: task for key, task in self._busy.items() if not task.done()}
        started = []
        round_of = self._reconcile_each if self._leads() else self._follow_each
        for key, rows in _by_owner(await self._services.all()).items():
            if key not in self._busy:
                self._busy[key] = asyncio.create_task(round_of(rows))
                started.append(self._busy[key])
        if started:
            await asyncio.wait(started, timeout=patience)

    async def _reconcile_each(self, rows: list[ServiceRow]) -> None:
        for row in rows:
            try:
                await self._reconcile(row)
            except Exception as exc:  # one bad service never stops the others
                _log_once(row.pk, type(exc).__name__, str(exc))
                self._events.set_problem(row.pk, _shown(exc))

    async def _follow_each(self, rows: list[ServiceRow]) -> None:
        for row in rows:
            try:
                await self._follow(row)
            except Exception as exc:  # one bad service never stops the others
                _log_once(row.pk, type(exc).__name__, str(exc))

    async def _follow(self, row: ServiceRow) -> None:
        """The round of a gateway that does not lead: route to the replicas the leader
        made ready (a replica this gateway's proxy suspects: once its own health check
        passes), and change nothing: no start, drain, cancel or state written."""
        spec = ServiceSpec.model_validate_json(row.spec)
        target = self._target(self.principal(row), spec.system)
        memory = self._memory.setdefault(row.pk, _Memory())
        now = _Round(row, spec, target, await _account(target), memory)
        live = await self._replicas.of(row.pk, True)
        kept = {replica.pk for replica in live}
        for gone in self._followed.get(row.pk, set()) - kept:
            self.traffic.forget(gone)
            await self._pools.close(gone)
        self._followed[row.pk] = kept
        self._publish_routes(now, live)
        for replica in live:
            route = self._route(now, replica)
            suspected = route is not None and self.traffic.suspected(replica.pk)
            if suspected and route is not None and await healthy(route, spec.health_path):
                self.traffic.confirm(replica.pk)

    def principal(self, row: ServiceRow) -> Principal:
        """Whom a service's jobs run as: its owner, or a declared service's run_as."""
        user = row.owner or self._options.run_as.get(row.name) or SERVICE_USER
        scopes = frozenset({Scope.JOBS_READ, Scope.JOBS_WRITE})
        return Principal(user, scopes, token_id=f"service:{row.name}")

    async def _reconcile(self, row: ServiceRow) -> None:
        spec = ServiceSpec.model_validate_json(row.spec)
        target = self._target(self.principal(row), spec.system)
        memory = self._memory.setdefault(row.pk, _Memory())
        now = _Round(row, spec, target, await _account(target), memory)
        rows = await self._replicas.of(row.pk, True)
        seen = await asyncio.gather(*(self._observe_safely(now, replica) for replica in rows))
        live = [s for s in seen if s is not None]
        self._publish_routes(now, await self._replicas.of(row.pk, True))
        rules = Rules(
            row.min_replicas,
            limits.max_replicas(self._options.limits, row),
            spec.target_in_flight,
            spec.idle_seconds,
            spec.handover_seconds,
        )
        decided = plan(rules, live, self.traffic.waiting[row.pk], row.stopping)
        await self._carry_out(now, self._within_limits(now, decided))
        if row.stopping and not await self._replicas.of(row.pk, True):
            await self._services.remove(row.pk)
            self._memory.pop(row.pk, None)
            self._events.forget(row.pk)
            return
        await self._replicas.forget_ended(row.pk, KEEP_ENDED)
        self._events.set_problem(row.pk, now.problem)

    def _within_limits(self, now: _Round, decided: Plan) -> Plan:
        """The plan with no more starts than the owner's limit leaves room for."""
        owner = now.row.owner
        room = limits.room(self._options.limits, now.row, self._live[owner])
        if room is not None and decided.start > room:
            most = self._options.limits.replicas_per_user
            now.problem = (
                f"{owner}'s services have {self._live[owner]} live replicas:"
                f" the limit is {most} per user"
            )
            decided.start = room
        return decided

    async def _observe_safely(self, now: _Round, replica: ReplicaRow) -> Seen | None:
        """:meth:`_observe`, all replicas at once (a slow health check delays no other);
        a replica that cannot be observed is logged once and counted as it was."""
        try:
            return await self._observe(now, replica)
        except Exception as exc:
            _log_once(now.row.pk, type(exc).__name__, f"replica {replica.pk}: {exc}")
            state = _state(replica.state)
            return Seen(replica.pk, state) if state.live else None

    async def _observe(self, now: _Round, replica: ReplicaRow) -> Seen | None:
        """Bring one live replica up to date; how the rules see it (None: it ended)."""
        state = _state(replica.state)
        if replica.job_id is None:
            age = (utcnow() - replica.created_at).total_seconds()
            if age > JOBLESS_SECONDS:
                await self._end(now, replica, ReplicaState.FAILED, "its job was never submitted")
                return None
            return Seen(replica.pk, state)
        job = await self._job_rows.get(replica.system, replica.job_id)
        ended = await self._follow_job(now, replica, state, job)
        if ended:
            return None
        in_flight = self.traffic.in_flight[replica.pk]
        if state == ReplicaState.DRAINING and not in_flight:
            await self._cancel(now, replica)
            await self._end(now, replica, ReplicaState.STOPPED, "drained")
            return None
        state = await self._check(now, replica, state, job)
        if not state.live:
            return None
        idle = self.traffic.idle_for(replica.pk)
        return Seen(replica.pk, state, in_flight, idle, _expires_in(job, utcnow()))

    async def _follow_job(
        self, now: _Round, replica: ReplicaRow, state: ReplicaState, job: JobRow | None
    ) -> bool:
        """Whether the replica's job has ended (the replica with it); else where it runs."""
        if job is None:
            await self._end(now, replica, ReplicaState.FAILED, "its job is not known")
            return True
        try:
            job_state = JobState(job.state)
        except ValueError:
            return False
        if job_state.terminal:
            why = f"its job ended {job_state.value}" + (f" ({job.reason})" if job.reason else "")
            ending = ReplicaState.STOPPED if state == ReplicaState.DRAINING else ReplicaState.FAILED
            await self._end(now, replica, ending, why)
            return True
        if job_state == JobState.RUNNING and replica.address is None:
            await self._locate(now, replica, job)
        return False

    async def _locate(self, now: _Round, replica: ReplicaRow, job: JobRow) -> None:
        cluster = now.target.cluster
        if cluster.name not in self._addresses:
            self._addresses[cluster.name] = await jobs_of.node_addresses(cluster)
        node = jobs_of.first_node(job.node_list)
        address = jobs_of.address_of(node, self._addresses[cluster.name])
        if address is not None:
            replica.node, replica.address = node, address
            await self._replicas.update(replica.pk, node=node, address=address)

    def _route(self, now: _Round, replica: ReplicaRow) -> Route | None:
        if replica.address is None:
            return None
        streams = now.target.cluster.transport
        pool = self._pools.get(replica.pk, streams, now.account)
        return Route(replica.pk, replica.address, replica.port, pool)

    async def _check(
        self, now: _Round, replica: ReplicaRow, state: ReplicaState, job: JobRow | None
    ) -> ReplicaState:
        """Health-check a starting or ready replica whose node is known; its new state."""
        route = self._route(now, replica)
        if route is None or state not in (ReplicaState.STARTING, ReplicaState.READY):
            return state
        ok = await healthy(route, now.spec.health_path)
        await self._record_health(replica, ok)
        squatted = await self._squatted(now, replica) if ok else None
        if squatted is not None:
            await self._cancel(now, replica)
            await self._end(now, replica, ReplicaState.FAILED, squatted)
            return ReplicaState.FAILED
        if ok:
            now.memory.misses.pop(replica.pk, None)
            self.traffic.confirm(replica.pk)
            if state == ReplicaState.STARTING:
                now.memory.failures = 0
                await self._set(now, replica, ReplicaState.READY, None, ready_at=utcnow())
            return ReplicaState.READY
        return await self._unhealthy(now, replica, state, job)

    async def _squatted(self, now: _Round, replica: ReplicaRow) -> str | None:
        """Why the replica's port is not its account's alone, where this gateway sees the
        node's sockets (the node is this machine, reached over the local transport); None
        where it is, or where the gateway cannot see (see the README's port check)."""
        local = now.target.cluster.config.transport == "local"
        if not local or replica.address is None or not ports.on_this_machine(replica.address):
            return None
        found = await ports.listeners()
        if found is None:  # no socket table to read (not Linux)
            return None
        uid = now.account.uid if now.account is not None else os.geteuid()
        return ports.stranger(found, replica.port, uid)

    async def _unhealthy(
        self, now: _Round, replica: ReplicaRow, state: ReplicaState, job: JobRow | None
    ) -> ReplicaState:
        if state == ReplicaState.STARTING:
            started = job.start_time if job is not None else None
            running = (utcnow() - started).total_seconds() if started else 0.0
            if running <= now.spec.ready_timeout:
                return state
            why = f"no 2xx from GET {now.spec.health_path} within {now.spec.ready_timeout} s"
        else:
            now.memory.misses[replica.pk] += 1
            if now.memory.misses[replica.pk] < HEALTH_MISSES:
                return state
            why = f"{HEALTH_MISSES} failed health checks in a row"
        await self._cancel(now, replica)
        await self._end(now, replica, ReplicaState.FAILED, why)
        return ReplicaState.FAILED

    async def _record_health(self, replica: ReplicaRow, ok: bool) -> None:
        """Store the check when its outcome changes, else at most every 10 seconds."""
        last = replica.last_health_at
        if replica.last_health_ok != ok or last is None or (utcnow() - last).total_seconds() > 10:
            await self._replicas.update(replica.pk, last_health_at=utcnow(), last_health_ok=ok)

    def _publish_routes(self, now: _Round, live: list[ReplicaRow]) -> None:
        metrics.replicas(now.row.owner, now.row.name, [r.state for r in live])
        ready = [r for r in live if r.state == ReplicaState.READY.value and not now.row.stopping]
        routes = [route for r in ready if (route := self._route(now, r)) is not None]
        self.traffic.set_routes(now.row.pk, routes)

    async def _carry_out(self, now: _Round, decided: Plan) -> None:
        for pk in decided.drain:
            replica = await self._replicas.get_pk(pk)
            if replica is not None and _state(replica.state).live:
                await self._set(now, replica, ReplicaState.DRAINING, "drained by the controller")
        if decided.start and time.monotonic() >= now.memory.next_start:
            for _ in range(decided.start):
                if not await self._start(now):
                    return

    async def _start(self, now: _Round) -> bool:
        """Start one replica; False if none can start now (no free port)."""
        spec, row = now.spec, now.row
        low, high = self._options.ports
        try:
            port = jobs_of.choose_port(low, high, await self._replicas.ports_in_use(spec.system))
        except HpcgateError as exc:
            now.problem = exc.detail
            return False
        replica = await self._replicas.add(
            ReplicaRow(
                service_pk=row.pk,
                system=spec.system,
                port=port,
                state=ReplicaState.STARTING.value,
                created_at=utcnow(),
                updated_at=utcnow(),
            )
        )
        self._live[row.owner] += 1
        self._event(now, replica, ReplicaState.STARTING, f"port {port}")
        time_limit = limits.time_limit(self._options.limits, row, spec)
        address = qualified_name(row.project, row.name)  # its proxy's name: PROJECT~NAME
        job = jobs_of.job_spec(address, spec.model_copy(update={"time_limit": time_limit}), port)
        try:
            submitted = await self._jobs.submit(now.target, job)
        except HpcgateError as exc:
            await self._end(now, replica, ReplicaState.FAILED, f"its job was refused: {exc.detail}")
            return True
        await self._replicas.update(replica.pk, job_id=submitted.job.id)
        return True

    async def _cancel(self, now: _Round, replica: ReplicaRow) -> None:
        if replica.job_id is None:
            return
        try:
            await now.target.cluster.cancel(replica.job_id, now.account)
        except HpcgateError as exc:  # it may have ended meanwhile
            log.info("cancelling replica %s's job %s: %s", replica.pk, replica.job_id, exc)

    async def _set(
        self,
        now: _Round,
        replica: ReplicaRow,
        state: ReplicaState,
        reason: str | None,
        **values: object,
    ) -> None:
        await self._replicas.update(replica.pk, state=state.value, reason=reason, **values)
        replica.state = state.value
        if state != ReplicaState.READY:
            self.traffic.withdraw(replica.pk)
        self._event(now, replica, state, reason)

    async def _end(
        self, now: _Round, replica: ReplicaRow, state: ReplicaState, reason: str
    ) -> None:
        await self._set(now, replica, state, reason)
        if state == ReplicaState.FAILED:
            now.memory.failures += 1
            now.memory.next_start = time.monotonic() + backoff(now.memory.failures)
            log.warning("service %s: replica %s failed: %s", now.row.name, replica.pk, reason)
        now.memory.misses.pop(replica.pk, None)
        self.traffic.forget(replica.pk)
        await self._pools.close(replica.pk)

    def _event(
        self, now: _Round, replica: ReplicaRow, state: ReplicaState, text: str | None
    ) -> None:
        event = ServiceEvent(
            kind="state", replica=replica.pk, state=state, text=text, time=utcnow()
        )
        self._events.publish(now.row.pk, event)


def _by_owner(rows: list[ServiceRow]) -> dict[str | int, list[ServiceRow]]:
    """The services by owner; each declared service (no owner) alone, by its key."""
    groups: dict[str | int, list[ServiceRow]] = {}
    for row in rows:
        groups.setdefault(row.owner or row.pk, []).append(row)
    return groups


async def _account(target: Target) -> Account | None:
    """The account the service's jobs run as; _Blocked, saying why, if it has none."""
    try:
        return await target.account()
    except HpcgateError as exc:
        raise _Blocked(f"its account cannot be resolved: {exc.detail}") from exc


def _shown(exc: Exception) -> str:
    """What a service's owner is told of an error in its round (only an HpcgateError's
    detail is meant to be shown; anything else is in the gateway's log)."""
    if isinstance(exc, _Blocked):
        return str(exc)
    if isinstance(exc, HpcgateError):
        return exc.detail
    return "the controller cannot reconcile it (see the gateway's log)"


@functools.lru_cache(maxsize=256)
def _log_once(service: int, kind: str, detail: str) -> None:
    log.error("service %s cannot be reconciled (%s: %s); the others go on", service, kind, detail)
