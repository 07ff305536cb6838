"""What the embedded scheduler has: its machine as one node in one partition.

The engine's ``info`` command gives the host, the job slots and the jobs running; each job
takes one slot, so the node's CPUs are the slots and its allocated CPUs the jobs running.
There are no reservations and no associations (no accounts to charge), so nothing runs
for those.
"""

from __future__ import annotations

import json
from typing import Any

from hpcgate.model.commands import Command, CommandResult
from hpcgate.model.errors import SchedulerUnavailable
from hpcgate.model.status import Association, Node, Partition, Reservation
from hpcgate.schedulers.base import ClusterInfo


class EmbeddedInfo(ClusterInfo):
    """Partitions and nodes of the embedded scheduler named ``partition`` (the system)."""

    def __init__(self, base: tuple[str, ...], partition: str) -> None:
        self._command = Command((*base, "info"))
        self._partition = partition

    def partitions_command(self) -> Command:
        return self._command

    def parse_partitions(self, result: CommandResult) -> list[Partition]:
        machine = _machine(result)
        return [
            Partition(
                name=self._partition,
                state="UP",
                default=True,
                nodes=[machine["host"]],
                total_cpus=machine["slots"],
                total_nodes=1,
                max_nodes=1,
            )
        ]

    def nodes_command(self) -> Command:
        return self._command

    def parse_nodes(self, result: CommandResult) -> list[Node]:
        machine = _machine(result)
        slots, running = machine["slots"], min(machine["running"], machine["slots"])
        return [
            Node(
                name=machine["host"],
                state=_node_state(running, slots),
                partitions=[self._partition],
                cpus=slots,
                cpus_allocated=running,
                memory=machine["memory_mib"],
                memory_allocated=0,  # jobs ask for no memory here
                gpus=0,
                features=[],
                address="127.0.0.1",  # the embedded scheduler runs its jobs on this machine
            )
        ]

    def reservations_command(self) -> None:
        return None

    def parse_reservations(self, result: CommandResult) -> list[Reservation]:
        return []

    def associations_command(self, account: str) -> None:
        return None

    def parse_associations(self, result: CommandResult) -> list[Association]:
        return []


def _node_state(running: int, slots: int) -> str:
    if running == 0:
        return "IDLE"
    return "ALLOCATED" if running >= slots else "MIXED"


def _machine(result: CommandResult) -> dict[str, Any]:
    if not result.ok:
        raise SchedulerUnavailable(f"embedded scheduler failed: {result.error_text()}")
    try:
        machine = json.loads(result.stdout)
        return {
            "host": str(machine["host"]),
            "slots": int(machine["slots"]),
            "running": int(machine["running"]),
            "memory_mib": int(machine["memory_mib"]),
        }
    except (ValueError, KeyError, TypeError) as exc:
        raise SchedulerUnavailable(f"embedded scheduler: unreadable info: {exc}") from None
