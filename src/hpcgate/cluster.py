"""A configured system: a scheduler adapter paired with a transport, plus its health."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime

from prometheus_client import Counter

from hpcgate.accounts import Account
from hpcgate.clock import utcnow
from hpcgate.config import SystemConfig
from hpcgate.model.commands import Command, CommandResult
from hpcgate.model.jobs import JobSpec
from hpcgate.model.scheduler import RunAs, SchedulerJob, SubmitContext
from hpcgate.schedulers.arrays import query_ids, with_arrays
from hpcgate.schedulers.base import Scheduler
from hpcgate.transports.base import Transport

SCHEDULER_COMMANDS = Counter(
    "hpcgate_scheduler_commands",
    "Scheduler commands run, by system and operation",
    ["system", "operation"],
)


@dataclass(frozen=True, slots=True)
class Health:
    healthy: bool
    checked_at: datetime | None
    message: str


class Cluster:
    """Runs the adapter's commands through the transport. Constructing one does no I/O."""

    def __init__(
        self, name: str, config: SystemConfig, scheduler: Scheduler, transport: Transport
    ) -> None:
        self.name = name
        self.config = config
        self.scheduler = scheduler
        self.transport = transport
        self.health = Health(False, None, "not checked yet")

    async def run(
        self, operation: str, command: Command, account: Account | None = None
    ) -> CommandResult:
        """Run a scheduler command as ``account`` (None: the gateway); a scheduler that is
        handed accounts (embedded) runs all its commands as the gateway, whose spool it is."""
        SCHEDULER_COMMANDS.labels(self.name, operation).inc()
        if self.scheduler.handed_account:
            account = None
        return await self.transport.run(command, self.config.command_timeout, account)

    async def submit(
        self, spec: JobSpec, context: SubmitContext, account: Account | None = None
    ) -> str:
        """Submit as ``account`` (None: the gateway's); a scheduler that is handed the account
        (embedded) is asked as the gateway to run the job as it."""
        if self.scheduler.handed_account:
            context = replace(context, run_as=_run_as(account))
        command = self.scheduler.submit_command(spec, context)
        return self.scheduler.parse_submit(await self.run("submit", command, account))

    async def find(self, tag: str, since: datetime) -> str | None:
        """The id of the job a submit tagged ``tag`` (made after ``since``) created, if the
        scheduler has it: among its current jobs, else in its records of past ones."""
        scheduler = self.scheduler
        command = scheduler.find_command(tag)
        if command is None:
            return None
        found = scheduler.parse_find(await self.run("find", command), tag)
        history = scheduler.find_in_history_command(tag, since)
        if found is not None or history is None:
            return found
        return scheduler.parse_find_in_history(await self.run("find", history), tag)

    async def ping(self) -> None:
        """Raise SchedulerUnavailable unless the scheduler answers its health check."""
        command = self.scheduler.ping_command()
        if command is not None:
            self.scheduler.parse_ping(await self.run("ping", command))

    async def status(self, native_ids: Sequence[str]) -> list[SchedulerJob]:
        """What the scheduler says of these jobs (and of the tasks of arrays among them):
        one status query, plus one history query for those it no longer lists.

        These read-only queries serve every user at once and run as the gateway's account.
        """
        if not native_ids and self.scheduler.ping_command() is not None:
            await self.ping()
            return []
        result = await self.run("status", self.scheduler.status_command(query_ids(native_ids)))
        live = self.scheduler.parse_status(result)
        listed = {job.native_id for job in live} | {job.array_job_id for job in live}
        missing = [native_id for native_id in native_ids if native_id not in listed]
        history = self.scheduler.history_command(query_ids(missing)) if missing else None
        if history is not None:
            past = self.scheduler.parse_history(await self.run("history", history))
            known = {job.native_id for job in past}
            live = [job for job in live if job.native_id not in known] + past
        return with_arrays(native_ids, live)

    async def cancel(self, native_id: str, account: Account | None = None) -> None:
        """Cancel as ``account`` (the caller's ownership of the job is the jobs service's
        to check)."""
        result = await self.run("cancel", self.scheduler.cancel_command(native_id), account)
        self.scheduler.parse_cancel(result)

    def record_health(self, healthy: bool, message: str = "") -> None:
        self.health = Health(healthy, utcnow(), message or ("ok" if healthy else "unhealthy"))


def _run_as(account: Account | None) -> RunAs | None:
    if account is None:
        return None
    return RunAs(account.name, account.uid, account.gid, account.groups)
