"""PBS's queues, hosts and reservations, parsed from reconstructed recordings
(tests/unit/recorded/pbs, see its README): no PBS, no processes."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
from anyio.abc import ByteStream

from hpcgate.accounts import Account, Accounts, UserEntry
from hpcgate.cluster import Cluster
from hpcgate.config import SystemConfig, UsersConfig
from hpcgate.model.commands import Command, CommandResult, FileCommand
from hpcgate.model.errors import SchedulerRejected, SchedulerUnavailable
from hpcgate.model.principal import DEFAULT_SCOPES, Principal
from hpcgate.schedulers.pbs import PbsScheduler
from hpcgate.schedulers.pbs_format import parse_size_mb
from hpcgate.schedulers.pbs_info import PbsInfo, allowed_users, node_state, reserved_hosts
from hpcgate.status.service import StatusService
from hpcgate.target import Target
from hpcgate.transports.filesystem import FileSystem

RECORDED = Path(__file__).parent / "recorded" / "pbs"
INFO = PbsInfo()


def recorded(name: str) -> CommandResult:
    return CommandResult(0, (RECORDED / name).read_bytes(), b"")


def failed(name: str, code: int = 1) -> CommandResult:
    return CommandResult(code, b"", (RECORDED / name).read_bytes())


def local(text: str) -> datetime:
    """A wall-clock time as PBS prints it: local to the server (here: to the tests)."""
    return datetime.fromisoformat(text).astimezone(UTC)


def test_commands() -> None:
    assert INFO.partitions_command().argv == ("qstat", "-Q", "-f", "-F", "json")
    assert INFO.nodes_command().argv == ("pbsnodes", "-a", "-F", "json")
    assert INFO.reservations_command().argv == ("pbs_rstat", "-f")
    assert INFO.associations_command("alice") is None
    assert isinstance(PbsScheduler.info, PbsInfo)


# --- queues -----------------------------------------------------------------------------


def test_queues_with_limits() -> None:
    queues = {queue.name: queue for queue in INFO.parse_partitions(recorded("qstat_queues.json"))}
    workq, gpu = queues["workq"], queues["gpu"]
    assert (workq.state, workq.max_time, workq.default_time, workq.max_nodes) == (
        "UP",
        86400,
        3600,
        16,
    )
    assert (workq.total_cpus, workq.total_nodes, workq.nodes) == (None, None, [])
    assert (gpu.total_cpus, gpu.total_nodes, gpu.max_time, gpu.max_nodes) == (64, 1, 172800, 1)
    assert not any(queue.default for queue in queues.values())


def test_a_queue_with_no_limits() -> None:
    queues = {queue.name: queue for queue in INFO.parse_partitions(recorded("qstat_queues.json"))}
    long = queues["long"]
    assert (long.max_time, long.default_time, long.max_nodes, long.total_cpus) == (
        None,
        None,
        None,
        None,
    )


def test_queue_states_routing_and_reservation_queues() -> None:
    queues = INFO.parse_partitions(recorded("qstat_queues.json"))
    states = {queue.name: queue.state for queue in queues}
    assert states == {
        "workq": "UP",
        "gpu": "UP",
        "long": "DOWN",  # takes jobs, starts none
        "old": "DRAIN",  # runs its jobs, takes no new ones
        "routeq": "UP",
        "R4321": "UP",
        "disabled": "INACTIVE",
    }


def test_no_queues_and_a_server_that_cannot_be_reached() -> None:
    assert INFO.parse_partitions(CommandResult(0, b"", b"")) == []
    with pytest.raises(SchedulerUnavailable, match="Connection refused"):
        INFO.parse_partitions(failed("qstat_connection_refused.txt"))


# --- hosts ------------------------------------------------------------------------------


def test_hosts_recorded() -> None:
    nodes = {node.name: node for node in INFO.parse_nodes(recorded("pbsnodes.json"))}
    assert list(nodes) == ["node01", "node07", "node09", "node10", "node11", "gpu01"]
    assert {name: node.state for name, node in nodes.items()} == {
        "node01": "MIXED",
        "node07": "ALLOCATED",
        "node09": "DOWN+DRAIN",
        "node10": "DOWN",
        "node11": "MIXED+DRAIN",
        "gpu01": "MIXED",
    }
    gpu = nodes["gpu01"]
    assert (gpu.cpus, gpu.cpus_allocated, gpu.gpus, gpu.partitions) == (64, 16, 4, ["gpu"])
    assert (gpu.memory, gpu.memory_allocated) == (515566, 65536)
    assert (nodes["node07"].cpus_allocated, nodes["node07"].memory_allocated) == (32, 4096)
    assert nodes["node01"].partitions == [] and nodes["node01"].features == []
    assert gpu.address == "gpu01.cluster.example"  # its MoM's host: where its jobs listen


def test_down_and_offline_hosts_say_why_others_do_not() -> None:
    nodes = {node.name: node for node in INFO.parse_nodes(recorded("pbsnodes.json"))}
    assert nodes["node09"].reason == "offlined by admin: bad DIMM"
    assert nodes["node10"].reason == "node down: communication closed"
    assert nodes["node11"].reason == "draining for kernel update"
    assert nodes["node01"].reason is None  # a free host's comment is only a note


def test_memory_in_the_units_hosts_report() -> None:
    nodes = {node.name: node for node in INFO.parse_nodes(recorded("pbsnodes.json"))}
    assert nodes["node01"].memory == 191246  # 195835908kb, as a MoM reports it
    assert nodes["node10"].memory == 96 * 1024  # 96gb, set by an administrator
    assert (nodes["node11"].memory, nodes["node11"].memory_allocated) == (131072, 16384)
    assert nodes["node09"].memory_allocated == 0  # pbsnodes leaves zero values out


@pytest.mark.parametrize(
    ("state", "cpus", "allocated", "expected"),
    [
        ("free", 32, 0, "IDLE"),
        ("free", 32, 32, "ALLOCATED"),
        ("job-exclusive", 32, 4, "ALLOCATED"),
        ("offline", 32, 0, "IDLE+DRAIN"),
        ("job-busy,offline", 32, 32, "ALLOCATED+DRAIN"),
        ("state-unknown,down", 32, 0, "DOWN"),
        ("Stale", 32, 0, "UNKNOWN"),
        ("down,maintenance", 32, 0, "DOWN+MAINT"),
        ("resv-exclusive", 32, 0, "IDLE+RESERVED"),
        ("provisioning,wait-provisioning", 32, 0, "IDLE+POWERING_UP"),
        ("free,initializing", 32, 0, "IDLE+INITIALIZING"),
        ("", 0, 0, "IDLE"),
    ],
)
def test_host_states_in_slurm_words(state: str, cpus: int, allocated: int, expected: str) -> None:
    assert node_state(state, cpus, allocated) == expected


@pytest.mark.parametrize(
    ("size", "mb"),
    [
        ("195835908kb", 191246),
        ("4gb", 4096),
        ("512mb", 512),
        ("1tb", 1048576),
        ("1048576", 1),
        ("2mw", 16),
        ("lots", None),
        (None, None),
    ],
)
def test_sizes(size: str | None, mb: int | None) -> None:
    assert parse_size_mb(size) == mb


def test_no_hosts_and_a_server_that_cannot_be_reached() -> None:
    no_hosts = CommandResult(0, b"", b"pbsnodes: No nodes found\n")
    assert INFO.parse_nodes(no_hosts) == []
    with pytest.raises(SchedulerUnavailable, match="cannot connect to server pbs01"):
        INFO.parse_nodes(failed("pbsnodes_connection_refused.txt"))
    with pytest.raises(SchedulerUnavailable, match="unreadable JSON"):
        INFO.parse_nodes(CommandResult(0, b'{"nodes": {', b""))


# --- reservations -----------------------------------------------------------------------


def test_reservations_recorded() -> None:
    course, chem, maint = INFO.parse_reservations(recorded("pbs_rstat_f.txt"))
    assert (course.name, course.state, course.partition) == ("R4321.pbs01", "ACTIVE", "R4321")
    assert (course.nodes, course.users, course.flags) == (["gpu01"], ["alice", "bob"], ["RUNNING"])
    assert course.start_time == local("2026-11-22T08:00:00")
    assert course.end_time == local("2026-11-22T18:00:00")
    assert (chem.state, chem.nodes, chem.users) == ("INACTIVE", ["node01", "node07"], ["carol"])
    assert chem.start_time == local("2026-12-02T06:00:00")  # "Wed Dec 02": a padded day
    assert (maint.name, maint.state, maint.flags) == (
        "S4400.pbs01",
        "INACTIVE",
        ["DEGRADED", "STANDING"],
    )
    assert all(resv.accounts == [] for resv in (course, chem, maint))


def test_a_running_reservation_that_lost_a_host_is_active() -> None:
    text = (RECORDED / "pbs_rstat_f.txt").read_text()
    degraded = text.replace("reserve_state = RESV_RUNNING", "reserve_state = RESV_DEGRADED")
    course = INFO.parse_reservations(CommandResult(0, degraded.encode(), b""))[0]
    assert (course.state, course.flags) == ("ACTIVE", ["DEGRADED"])


def test_no_reservations() -> None:
    assert INFO.parse_reservations(CommandResult(0, b"", b"")) == []


def test_reservation_failures() -> None:
    with pytest.raises(SchedulerUnavailable, match="cannot connect to server"):
        INFO.parse_reservations(failed("pbs_rstat_connection_refused.txt", code=162))
    refused = CommandResult(0, b"", b"pbs_rstat: Unauthorized Request \n")
    with pytest.raises(SchedulerRejected, match=r"^Unauthorized Request$"):
        INFO.parse_reservations(refused)  # pbs_rstat exits 0 when the query itself fails


@pytest.mark.parametrize(
    ("acl", "users"),
    [
        ("+alice,+bob,-mallory", ["alice", "bob"]),
        ("carol@login01.cluster.example", ["carol"]),
        ("alice@*,alice@login02", ["alice"]),
        (None, []),
    ],
)
def test_allowed_users(acl: str | None, users: list[str]) -> None:
    assert allowed_users(acl) == users


def test_reserved_hosts() -> None:
    assert reserved_hosts("(n1:ncpus=4)+(n2:ncpus=4:mem=8gb)+(n1:ngpus=1)") == ["n1", "n2"]
    assert reserved_hosts(None) == []


# --- through the status service ---------------------------------------------------------


class FakePbsTransport:
    """A fake transport standing in for a live PBS server (none can run here): it answers
    every command with one recorded output and remembers the commands."""

    def __init__(self, answer: CommandResult) -> None:
        self.answer = answer
        self.commands: list[Command] = []

    async def run(
        self, command: Command, timeout: float, account: Account | None = None
    ) -> CommandResult:
        self.commands.append(command)
        return self.answer

    def files(self, account: Account | None = None) -> FileSystem:
        raise AssertionError("the PBS status tests touch no files")

    async def stream(self, host: str, port: int, account: Account | None = None) -> ByteStream:
        raise AssertionError("the PBS status tests open no streams")

    async def start(self) -> None:
        pass

    async def close(self) -> None:
        return None

    async def run_long(
        self, command: Command, account: Account | None, on_line: Callable[[str], None]
    ) -> CommandResult:
        raise AssertionError("the PBS status tests run no long commands")

    async def run_files(
        self, command: FileCommand, account: Account | None, on_line: Callable[[str], None]
    ) -> CommandResult:
        raise AssertionError("the PBS status tests run no file programs")

    async def lookup_user(self, name: str) -> UserEntry | None:
        raise AssertionError("single-user: the PBS status tests look up no account")

    async def own_home(self) -> str:
        raise AssertionError("the PBS status tests need no home")


def service(transport: FakePbsTransport) -> tuple[StatusService, Target]:
    cluster = Cluster("hpc", SystemConfig(scheduler="pbs"), PbsScheduler(), transport)
    accounts = Accounts(UsersConfig(), multi=False)
    return StatusService(accounts), Target(WHO, cluster, accounts)


WHO = Principal("alice", DEFAULT_SCOPES, "t1")


async def test_the_service_serves_pbs_hosts() -> None:
    transport = FakePbsTransport(recorded("pbsnodes.json"))
    status, target = service(transport)
    nodes = await status.nodes(target)
    assert len(nodes) == 6
    assert [command.argv[0] for command in transport.commands] == ["pbsnodes"]


async def test_pbs_has_no_associations_and_runs_nothing_for_them() -> None:
    transport = FakePbsTransport(CommandResult(1, b"", b"should not run"))
    status, target = service(transport)
    assert await status.associations(target) == []
    assert transport.commands == []
