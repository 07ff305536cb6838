"""Slurm's resource descriptions, parsed from output recorded on the test cluster
(tests/unit/recorded/slurm, from scripts/slurm) plus hand-made lines for what that cluster
lacks (GPUs, a drained node). The Slurm tier checks the same routes against the live one."""

from __future__ import annotations

from pathlib import Path

import pytest

from hpcgate.model.commands import CommandResult
from hpcgate.model.errors import SchedulerUnavailable
from hpcgate.schedulers.slurm_format import hostnames
from hpcgate.schedulers.slurm_info import SlurmInfo

RECORDED = Path(__file__).parent / "recorded" / "slurm"
INFO = SlurmInfo()


def recorded(name: str) -> CommandResult:
    return CommandResult(0, (RECORDED / name).read_bytes(), b"")


def test_partitions_with_limits_and_default() -> None:
    debug, batch = INFO.parse_partitions(recorded("partitions.txt"))
    assert (debug.name, debug.default, debug.max_time) == ("debug", True, None)
    assert debug.nodes == ["node1", "node2", "node3", "node4"]
    assert (debug.total_cpus, debug.total_nodes, debug.state) == (8, 4, "UP")
    assert (batch.name, batch.default, batch.max_time) == ("batch", False, 300)


def test_nodes_recorded() -> None:
    nodes = INFO.parse_nodes(recorded("nodes.txt"))
    assert [node.name for node in nodes] == ["node1", "node2", "node3", "node4"]
    first = nodes[0]
    assert (first.cpus, first.memory, first.gpus) == (2, 1000, 0)
    assert first.partitions == ["debug", "batch"]
    assert first.reason is None
    assert first.address == "127.0.0.1"  # NodeAddr: the node's name does not resolve here


def test_drained_gpu_node_with_spaces_in_values() -> None:
    line = (
        "NodeName=gpu07 Arch=x86_64 CoresPerSocket=16  CPUAlloc=8 CPUEfctv=64 CPUTot=64 "
        "AvailableFeatures=a100,ib ActiveFeatures=a100,ib Gres=gpu:a100:4(S:0-1),gpu:t4:1 "
        "OS=Linux 6.1.0-18-amd64 #1 SMP PREEMPT_DYNAMIC Debian 6.1.76-1 (2024-02-01) "
        "RealMemory=512000 AllocMem=64000 State=IDLE+DRAIN Partitions=gpu "
        "Reason=bad DIMM slot 3 [root@2026-11-20T10:00:00]"
    )
    (node,) = INFO.parse_nodes(CommandResult(0, line.encode(), b""))
    assert (node.cpus, node.cpus_allocated, node.gpus) == (64, 8, 5)
    assert (node.memory, node.memory_allocated) == (512000, 64000)
    assert node.features == ["a100", "ib"]
    assert node.state == "IDLE+DRAIN"
    assert node.reason == "bad DIMM slot 3 [root@2026-11-20T10:00:00]"
    assert node.address is None  # no NodeAddr reported: unknown


def test_reservations_recorded_and_none() -> None:
    (maint,) = INFO.parse_reservations(recorded("reservations.txt"))
    assert (maint.name, maint.nodes, maint.users) == ("maint", ["node4"], ["alice"])
    assert "MAINT" in maint.flags and maint.accounts == []
    assert maint.start_time is not None and maint.start_time.year == 2040
    empty = CommandResult(0, b"No reservations in the system\n", b"")
    assert INFO.parse_reservations(empty) == []


def test_associations_recorded() -> None:
    rows = INFO.parse_associations(recorded("associations-alice.txt"))
    by_account = {row.account: row for row in rows}
    assert set(by_account) == {"alphaacct", "testacct"}
    assert by_account["testacct"].default and not by_account["alphaacct"].default
    assert by_account["testacct"].qos == ["high", "normal"]
    assert by_account["testacct"].default_qos == "normal"
    assert all(row.user == "alice" for row in rows)


def test_controller_down_is_unavailable() -> None:
    down = CommandResult(1, b"", b"slurm_load_partitions: Unable to contact slurm controller\n")
    with pytest.raises(SchedulerUnavailable):
        INFO.parse_partitions(down)


@pytest.mark.parametrize(
    ("text", "names"),
    [
        ("node[1-3]", ["node1", "node2", "node3"]),
        ("n[08-10],login", ["n08", "n09", "n10", "login"]),
        ("r[1-2]n[1,3]", ["r1n1", "r1n3", "r2n1", "r2n3"]),
        ("", []),
    ],
)
def test_hostnames(text: str, names: list[str]) -> None:
    assert hostnames(text) == names


def test_association_command_is_argv_for_the_account() -> None:
    argv = INFO.associations_command("alice").argv
    assert argv[0] == "sacctmgr" and "alice" in argv and "withassoc" in argv
