"""The agent's allow-list, without a connection: every argv the adapters build passes it;
what they never build, paths outside the roots and accounts it may not act as do not."""

from __future__ import annotations

import datetime
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from hpcgate.agent.config import AgentConfig, ConfigError, parse
from hpcgate.agent.policy import Policy, Refused
from hpcgate.agentwire.messages import Beneath
from hpcgate.model.commands import Command
from hpcgate.model.jobs import JobSpec
from hpcgate.model.scheduler import SubmitContext
from hpcgate.schedulers.embedded import EmbeddedScheduler
from hpcgate.schedulers.pbs import PbsScheduler
from hpcgate.schedulers.slurm import SlurmScheduler

PROGRAMS = ("sbatch", "squeue", "scontrol", "sacct", "sacctmgr", "scancel", "sinfo", "qsub",
            "qstat", "qdel", "pbsnodes", "pbs_rstat", "cp", "mv", "tar")  # fmt: skip


@pytest.fixture
def bin_dir(tmp_path: Path) -> Path:
    """A directory with an executable of each program's name: ``path`` is where the agent
    looks programs up, and only an installed program is run."""
    directory = tmp_path / "bin"
    directory.mkdir()
    for name in PROGRAMS:
        (directory / name).write_text("#!/bin/sh\nexit 0\n")
        (directory / name).chmod(0o755)
    return directory


def config(tmp_path: Path, bin_dir: Path, scheduler: str) -> AgentConfig:
    return AgentConfig(
        gateway="http://127.0.0.1:1",
        token_file=tmp_path / "token",
        scheduler=scheduler,
        roots=("{home}", f"{tmp_path}/scratch/{{user}}"),
        state_dir=tmp_path / "state",
        path=str(bin_dir),
        embedded_spool=tmp_path / "spool",
        embedded_slots=3,
    )


def commands(scheduler: SlurmScheduler | PbsScheduler | EmbeddedScheduler) -> Iterator[Command]:
    spec = JobSpec(script="#!/bin/sh\ntrue\n", name="x", environment={"FOO": "1"})
    yield scheduler.submit_command(spec, SubmitContext("tag-1", "/home/alice"))
    yield scheduler.status_command(["1", "2"])
    yield scheduler.cancel_command("1")
    since = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
    for made in (
        scheduler.find_command("tag-1"),
        scheduler.find_in_history_command("tag-1", since),
        scheduler.ping_command(),
        scheduler.history_command(["1"]),
    ):
        if made is not None:
            yield made
    info = scheduler.info
    assert info is not None
    for made in (
        info.partitions_command(),
        info.nodes_command(),
        info.reservations_command(),
        info.associations_command("alice"),
    ):
        if made is not None:
            yield made


@pytest.mark.parametrize("kind", ["slurm", "pbs"])
def test_every_command_the_adapter_builds_passes(tmp_path: Path, bin_dir: Path, kind: str) -> None:
    policy = Policy(config(tmp_path, bin_dir, kind))
    adapter = SlurmScheduler() if kind == "slurm" else PbsScheduler()
    for command in commands(adapter):
        env = dict(command.env) if command.env is not None else None
        argv = policy.command(command.argv, env)
        assert argv == (str(bin_dir / command.argv[0]), *command.argv[1:])


def test_the_embedded_engine_runs_as_the_agents_own(tmp_path: Path, bin_dir: Path) -> None:
    policy = Policy(config(tmp_path, bin_dir, "embedded"))
    gateway_side = EmbeddedScheduler(Path("/elsewhere/spool"), 64, python="/opt/py/bin/python")
    for command in commands(gateway_side):
        argv = policy.command(command.argv, None)
        spool = str(tmp_path / "spool")
        assert argv[:7] == (
            sys.executable,
            "-m",
            "hpcgate.embedded",
            "--spool",
            spool,
            "--slots",
            "3",
        )
        assert argv[7:] == command.argv[7:]


@pytest.mark.parametrize(
    ("argv", "env"),
    [
        (("sh", "-c", "rm -rf ~"), None),
        (("/usr/bin/sbatch", "x"), None),  # a path, not a name
        (("../bin/sbatch",), None),
        (("rm", "-rf", "/"), None),
        (("cp", "/etc/shadow", "/tmp/x"), None),  # a file program is no scheduler command
        (("sbatch", "--wrap", "id"), None),
        (("sbatch", "--wrap=id"), None),
        (("sbatch", "--parsable"), {"LD_PRELOAD": "/tmp/x.so"}),
        (("sbatch", "--parsable"), {"PATH": "/tmp"}),
        (("sbatch", "--parsable"), {"PYTHONPATH": "/tmp"}),
        (("sbatch", "--parsable"), {"BASH_ENV": "/tmp/x"}),
    ],
)
def test_what_the_adapter_never_sends_is_refused(
    tmp_path: Path, bin_dir: Path, argv: tuple[str, ...], env: dict[str, str] | None
) -> None:
    with pytest.raises(Refused):
        Policy(config(tmp_path, bin_dir, "slurm")).command(argv, env)


def test_an_uninstalled_program_is_refused(tmp_path: Path, bin_dir: Path) -> None:
    (bin_dir / "sinfo").unlink()
    with pytest.raises(Refused, match="not installed"):
        Policy(config(tmp_path, bin_dir, "slurm")).command(("sinfo",), None)


def test_file_programs(tmp_path: Path, bin_dir: Path) -> None:
    policy = Policy(config(tmp_path, bin_dir, "slurm"))
    assert policy.file_command(("cp", "-R")) == str(bin_dir / "cp")
    for argv in (("rm", "-rf"), ("sh",), (Beneath("/x", None, "path", ""),)):
        with pytest.raises(Refused):
            policy.file_command(argv)


def test_paths_are_confined_to_the_agents_roots(tmp_path: Path, bin_dir: Path) -> None:
    policy = Policy(config(tmp_path, bin_dir, "slurm"))
    alice = policy.account("alice")
    assert alice is not None
    scratch = f"{tmp_path}/scratch/alice"
    assert policy.confine(None, f"{scratch}/a/b", alice) == scratch
    assert policy.confine(f"{scratch}/a", f"{scratch}/a/b", alice) == f"{scratch}/a"
    assert policy.confine(alice.home, f"{alice.home}/x", alice) == alice.home
    for root, path in (
        (None, f"{tmp_path}/scratch/bob/x"),  # another user's root
        (None, "/etc/passwd"),
        ("/", "/etc/passwd"),  # a root the gateway names is no root of the agent's
        (scratch, f"{scratch}/../bob/x"),
        (scratch, "/etc/passwd"),  # not inside the root it came with
        (None, "relative/x"),
        (None, f"{scratch}/a\0b"),
    ):
        with pytest.raises(Refused):
            policy.confine(root, path, alice)


def test_a_root_agent_never_acts_as_root_a_system_account_or_nobody(
    tmp_path: Path, bin_dir: Path
) -> None:
    policy = Policy(config(tmp_path, bin_dir, "slurm"))
    assert policy.root_agent and policy.serves is None
    for name in ("root", "daemon", "nobody", "no-such-user-here"):
        with pytest.raises(Refused):
            policy.account(name)
    assert policy.account(None) is None


@pytest.mark.parametrize(
    "data",
    [
        {},
        {"gateway": "ftp://x", "token_file": "/t", "scheduler": "slurm", "roots": ["/x"]},
        {"gateway": "http://x", "token_file": "/t", "scheduler": "lsf", "roots": ["/x"]},
        {"gateway": "http://x", "token_file": "/t", "scheduler": "slurm", "roots": []},
        {"gateway": "http://x", "token_file": "/t", "scheduler": "slurm", "roots": ["rel"]},
        {"gateway": "http://x", "token_file": "/t", "scheduler": "slurm", "roots": ["/a/../b"]},
        {"gateway": "http://x", "token_file": "/t", "scheduler": "slurm", "roots": ["/x"], "y": 1},
        {"gateway": "http://x", "token_file": "/t", "scheduler": "slurm", "roots": "/x"},
        {"gateway": "http://x", "token_file": "/t", "scheduler": "slurm", "roots": ["/x"],
         "min_uid": True},
        {"gateway": "http://x", "token_file": "/t", "scheduler": "slurm", "roots": ["/x"],
         "bulk_reads": 1},
    ],
)  # fmt: skip
def test_bad_configurations_are_refused(data: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        parse(data)


def test_the_connect_address() -> None:
    base = {"token_file": "/t", "scheduler": "slurm", "roots": ["/x"]}
    assert parse({**base, "gateway": "https://gw/"}).url == "wss://gw/api/v1/agent/connect"
    assert parse({**base, "gateway": "http://gw"}).url == "ws://gw/api/v1/agent/connect"


def test_bulk_reads_are_on_unless_switched_off() -> None:
    base = {"gateway": "http://gw", "token_file": "/t", "scheduler": "slurm", "roots": ["/x"]}
    assert parse(base).bulk_reads is True
    assert parse({**base, "bulk_reads": False}).bulk_reads is False
