"""The agent's check of a stream's host on a Slurm cluster: the hosts are the nodes the
agent's own ``sinfo`` lists (through its policy and local transport, as it runs them),
never one the gateway names."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from hpcgate.agent.config import parse
from hpcgate.agent.dial import Dialer
from hpcgate.agent.policy import Refused


async def test_only_the_schedulers_nodes_and_the_port_range_are_stream_targets(
    slurm_cluster: None, tmp_path: Path
) -> None:
    listed = (await anyio.run_process(["sinfo", "-h", "-N", "-o", "%N"])).stdout.decode().split()
    assert listed
    config = parse(
        {
            "gateway": "https://gw.example.org",
            "token_file": str(tmp_path / "token"),
            "scheduler": "slurm",
            "roots": ["{home}"],
            "state_dir": str(tmp_path / "state"),
            "stream_hosts": ["extra.example.org"],
        }
    )
    dialer = Dialer(config)
    for node in listed:
        await dialer.targets.check(node, 20000)
        await dialer.targets.check(node, 32767)
    await dialer.targets.check("extra.example.org", 30000)
    for host, port in (
        (listed[0], 19999),
        (listed[0], 40000),
        (listed[0], 22),
        ("10.9.9.9", 30000),  # an address that is no node's
        ("not-a-node", 30000),
    ):
        with pytest.raises(Refused):
            await dialer.targets.check(host, port)
