"""The scheduler adapter seam.

An adapter is pure: it turns requests into :class:`~hpcgate.model.commands.Command` argv lists
and parses :class:`~hpcgate.model.commands.CommandResult` outputs. It never executes anything;
a transport does. This keeps each adapter testable on recorded output with no I/O.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Sequence
from datetime import datetime

from hpcgate.model.commands import Command, CommandResult
from hpcgate.model.errors import SchedulerRejected, SchedulerUnavailable, UnsupportedField
from hpcgate.model.jobs import JobSpec
from hpcgate.model.scheduler import SchedulerJob, SubmitContext
from hpcgate.model.status import Association, Node, Partition, Reservation


class Scheduler(ABC):
    """Builds a scheduler's commands and parses their output."""

    kind: str
    #: JobSpec fields this scheduler honours; any other given field is a 422.
    supported_fields: frozenset[str]
    #: True when submitting twice with one tag creates one job (safe to retry).
    idempotent_submit: bool = False
    #: True when the scheduler runs each job as the caller's account (Slurm, PBS, and the
    #: embedded scheduler of a root gateway); False when jobs run as whoever runs it.
    per_user: bool = True
    #: True when the scheduler's commands run as the gateway, which hands it the caller's
    #: account in :class:`SubmitContext` (``run_as``); False when they run as the caller.
    handed_account: bool = False
    #: Partitions, nodes, reservations and associations; None if the scheduler has none.
    info: ClusterInfo | None = None
    #: A script line that sets dependencies: refused, as the gateway checks only the
    #: ``dependencies`` field's jobs (the caller's own), never a script's.
    dependency_directive: re.Pattern[str] | None = None

    def check(self, spec: JobSpec) -> None:
        """Reject fields this scheduler cannot honour, naming them."""
        unsupported = sorted(spec.given_fields() - self.supported_fields)
        if unsupported:
            raise UnsupportedField(
                f"the {self.kind} scheduler does not support: {', '.join(unsupported)}",
                fields=unsupported,
            )
        if spec.script is not None:
            self.check_script(spec.script, "script")

    def check_script(self, text: str, field: str) -> None:
        """Refuse a script (given as ``field``) whose directives set dependencies: the
        gateway checks only the ``dependencies`` field's jobs against the caller's own."""
        directive = self.dependency_directive
        if directive is not None and directive.search(text):
            raise SchedulerRejected(
                "give job dependencies in the 'dependencies' field, not as a script directive",
                fields=[field],
            )

    @abstractmethod
    def submit_command(self, spec: JobSpec, context: SubmitContext) -> Command: ...

    @abstractmethod
    def parse_submit(self, result: CommandResult) -> str:
        """The new job's id; raises SchedulerRejected with the scheduler's message."""

    @abstractmethod
    def status_command(self, native_ids: Sequence[str]) -> Command: ...

    @abstractmethod
    def parse_status(self, result: CommandResult) -> list[SchedulerJob]: ...

    def find_command(self, tag: str) -> Command | None:
        """A query for the job a submit tagged ``tag`` created, for a submit whose outcome
        is unknown (it timed out); None if the scheduler cannot be asked."""
        return None

    def parse_find(self, result: CommandResult, tag: str) -> str | None:
        """The id of the job tagged ``tag``, or None if there is none."""
        return None

    def find_in_history_command(self, tag: str, since: datetime) -> Command | None:
        """A second query, in the scheduler's records of past jobs (submitted after
        ``since``), for a job that :meth:`find_command` no longer shows; None if none."""
        return None

    def parse_find_in_history(self, result: CommandResult, tag: str) -> str | None:
        """The id of the job tagged ``tag`` in those records, or None."""
        return None

    @property
    def recoverable_submit(self) -> bool:
        """Whether a submit with an unknown outcome can be settled later (never twice)."""
        return self.idempotent_submit or self.find_command("") is not None

    def ping_command(self) -> Command | None:
        """A cheap health check for when no job is live; None: query status anyway."""
        return None

    def parse_ping(self, result: CommandResult) -> None:
        """Raise SchedulerUnavailable unless the scheduler answered as healthy."""
        if not result.ok:
            raise SchedulerUnavailable(result.error_text())

    def history_command(self, native_ids: Sequence[str]) -> Command | None:
        """A second query for jobs the status query no longer knows (Slurm's sacct)."""
        return None

    def parse_history(self, result: CommandResult) -> list[SchedulerJob]:
        return []

    @abstractmethod
    def cancel_command(self, native_id: str) -> Command: ...

    @abstractmethod
    def parse_cancel(self, result: CommandResult) -> None: ...


class ClusterInfo(ABC):
    """Builds the commands that describe a system's resources and parses their output."""

    @abstractmethod
    def partitions_command(self) -> Command: ...

    @abstractmethod
    def parse_partitions(self, result: CommandResult) -> list[Partition]: ...

    @abstractmethod
    def nodes_command(self) -> Command: ...

    @abstractmethod
    def parse_nodes(self, result: CommandResult) -> list[Node]: ...

    @abstractmethod
    def reservations_command(self) -> Command | None:
        """The command listing reservations; None if the scheduler has none (nothing runs)."""

    @abstractmethod
    def parse_reservations(self, result: CommandResult) -> list[Reservation]: ...

    @abstractmethod
    def associations_command(self, account: str) -> Command | None:
        """The associations of a Unix account (run as that account); None if the scheduler
        has no associations, so the account has none and nothing needs to run."""

    @abstractmethod
    def parse_associations(self, result: CommandResult) -> list[Association]: ...
