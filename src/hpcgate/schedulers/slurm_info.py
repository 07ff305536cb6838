"""Slurm's description of itself: ``scontrol show partition|node|reservation`` and the
caller's associations from ``sacctmgr``, parsed into :mod:`hpcgate.model.status`.

Slurm 22.05's scontrol has no JSON output; ``--oneliner`` prints one record per line as
``Key=Value`` pairs separated by spaces, where a few values (``OS``, ``Reason``) hold
spaces themselves, so a record is split only before a space that starts the next key.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from hpcgate.model.commands import Command, CommandResult
from hpcgate.model.status import Association, Node, Partition, Reservation
from hpcgate.schedulers.base import ClusterInfo
from hpcgate.schedulers.slurm_format import hostnames, parse_duration, raise_for, time_of

_NEXT_KEY = re.compile(r" (?=[A-Za-z][A-Za-z0-9_:/]*=)")
_NONE = frozenset({"", "(null)", "N/A", "NONE", "UNLIMITED", "n/a", "n/s"})
_GPU = re.compile(r"gpu(?::[^:,(]+)?:(\d+)")
ASSOCIATION_FIELDS = (
    "Account,User,Partition,QOS,DefaultQOS,DefaultAccount,MaxJobs,MaxSubmitJobs,MaxWall"
)


def records(result: CommandResult) -> Iterator[dict[str, str]]:
    """The ``Key=Value`` records of ``scontrol --oneliner`` output."""
    raise_for(result)
    for line in result.stdout.decode(errors="replace").splitlines():
        if "=" in line:
            pairs = (pair.partition("=") for pair in _NEXT_KEY.split(line.strip()))
            yield {key: text.strip() for key, _, text in pairs}


def value(record: dict[str, str], key: str) -> str | None:
    text = record.get(key, "")
    return None if text in _NONE else text


def number(record: dict[str, str], key: str) -> int | None:
    text = value(record, key)
    return int(text) if text is not None and text.isdigit() else None


def words(text: str | None) -> list[str]:
    return [] if text is None else [word for word in text.split(",") if word]


class SlurmInfo(ClusterInfo):
    """Slurm's partitions, nodes, reservations and associations."""

    def partitions_command(self) -> Command:
        return Command(("scontrol", "--oneliner", "show", "partition"))

    def parse_partitions(self, result: CommandResult) -> list[Partition]:
        return [_partition(record) for record in records(result)]

    def nodes_command(self) -> Command:
        return Command(("scontrol", "--oneliner", "show", "node"))

    def parse_nodes(self, result: CommandResult) -> list[Node]:
        return [_node(record) for record in records(result)]

    def reservations_command(self) -> Command:
        return Command(("scontrol", "--oneliner", "show", "reservation"))

    def parse_reservations(self, result: CommandResult) -> list[Reservation]:
        return [_reservation(record) for record in records(result)]

    def associations_command(self, account: str) -> Command:
        return Command(
            (
                "sacctmgr",
                "--noheader",
                "--parsable2",
                "show",
                "user",
                account,
                "withassoc",
                f"format={ASSOCIATION_FIELDS}",
            )
        )

    def parse_associations(self, result: CommandResult) -> list[Association]:
        raise_for(result)
        lines = result.stdout.decode(errors="replace").splitlines()
        return [_association(line.split("|")) for line in lines if line.count("|") == 8]


def _partition(record: dict[str, str]) -> Partition:
    return Partition(
        name=record.get("PartitionName", ""),
        state=record.get("State", "UNKNOWN"),
        default=record.get("Default") == "YES",
        nodes=hostnames(value(record, "Nodes")),
        total_cpus=number(record, "TotalCPUs"),
        total_nodes=number(record, "TotalNodes"),
        max_time=_duration(value(record, "MaxTime")),
        default_time=_duration(value(record, "DefaultTime")),
        max_nodes=number(record, "MaxNodes"),
    )


def _node(record: dict[str, str]) -> Node:
    gres = value(record, "Gres") or ""
    return Node(
        name=record.get("NodeName", ""),
        state=record.get("State", "UNKNOWN"),
        partitions=words(value(record, "Partitions")),
        cpus=number(record, "CPUTot") or 0,
        cpus_allocated=number(record, "CPUAlloc") or 0,
        memory=number(record, "RealMemory") or 0,
        memory_allocated=number(record, "AllocMem") or 0,
        gpus=sum(int(count) for count in _GPU.findall(gres)),
        features=words(value(record, "AvailableFeatures")),
        reason=value(record, "Reason"),
        address=value(record, "NodeAddr"),
    )


def _reservation(record: dict[str, str]) -> Reservation:
    return Reservation(
        name=record.get("ReservationName", ""),
        state=record.get("State", "UNKNOWN"),
        start_time=time_of(record.get("StartTime", "")),
        end_time=time_of(record.get("EndTime", "")),
        nodes=hostnames(value(record, "Nodes")),
        users=words(value(record, "Users")),
        accounts=words(value(record, "Accounts")),
        partition=value(record, "PartitionName"),
        flags=words(value(record, "Flags")),
    )


def _association(fields: list[str]) -> Association:
    account, user, partition, qos, default_qos, default_account, jobs, submit, wall = fields
    return Association(
        account=account,
        user=user,
        partition=partition or None,
        qos=words(qos),
        default_qos=default_qos or None,
        default=account == default_account,
        max_jobs=int(jobs) if jobs.isdigit() else None,
        max_submit_jobs=int(submit) if submit.isdigit() else None,
        max_wall=_duration(wall or None),
    )


def _duration(text: str | None) -> int | None:
    return None if text is None else parse_duration(text)
