"""The network cuts the agent's connection while a command runs on it: an nft rule on this
machine's loopback answers every packet of the agent's flow (and its redials) with a TCP
reset. The command goes on; the agent redials with backoff, refused while the rule holds;
once it goes, the agent returns and the gateway gets the command's kept result: one job,
never two.

The agent dials the gateway at 127.0.0.2 and the test at 127.0.0.1, so the rule cuts only
the agent. The command is a submit to the embedded scheduler, held mid-run by the test
holding the spool's lock (which every submit takes), so the cut falls while it runs."""

from __future__ import annotations

import fcntl
import os
import subprocess
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from tests.agent.test_agent_gateway import agent_token, eventually, named, served, started
from tests.support.accounts import give
from tests.support.agent_process import AgentProcess
from tests.support.gateway_process import GatewayProcess, new_gateway

AGENT_SIDE = "127.0.0.2"  # the address the agent dials: its flow is the only one cut
SYSTEM = "/api/v1/systems/edge"

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 and not os.environ.get("CI"), reason="nft rules need root"
)


def nft(script: str) -> None:
    subprocess.run(["nft", "-f", "-"], input=script, text=True, check=True, timeout=30)


@contextmanager
def cut(port: int) -> Iterator[None]:
    """Every packet to or from the gateway's ``port`` at :data:`AGENT_SIDE` is answered with
    a TCP reset (a SYN too: the agent's redials are refused) until the block ends."""
    table = f"hpcgate_agent_cut_{port}"
    nft(
        f"table ip {table} {{\n chain out {{\n  type filter hook output priority 0;\n"
        "  tcp flags rst accept\n"  # the resets it makes pass (both ends are here)
        f"  ip daddr {AGENT_SIDE} tcp dport {port} reject with tcp reset\n"
        f"  ip saddr {AGENT_SIDE} tcp sport {port} reject with tcp reset\n }}\n}}\n"
    )
    try:
        yield
    finally:
        nft(f"delete table ip {table}\n")


def hold(lock: Path) -> int:
    """The embedded spool's lock, held by this test until the descriptor is closed: every
    submit waits for it."""
    fd = os.open(lock, os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX)
    return fd


def submitting(spool: Path) -> bool:
    """Whether the engine's ``submit`` for ``spool`` runs (held at the lock, by the test)."""
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            words = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if str(spool).encode() in words and b"submit" in words:
            return True
    return False


@contextmanager
def edge(base: Path) -> Iterator[tuple[GatewayProcess, AgentProcess]]:
    base.chmod(0o711)
    (base / "alice").mkdir()
    give(base / "alice", "alice")
    config = f"""
host = "0.0.0.0"  # the agent comes in at {AGENT_SIDE}, the test at 127.0.0.1

[systems.edge]
scheduler = "embedded"
transport = "agent"
status_interval = 60  # the engine's status takes the lock too: none queue behind the test
roots = ["{base}/{{user}}"]
workdir = "{base}/{{user}}"
spool = "{base}/spool"
"""
    gateway = new_gateway(base / "gateway-home", config)
    started(gateway)
    _, token = agent_token(gateway)
    url = f"http://{AGENT_SIDE}:{gateway.port}"
    agent = AgentProcess(base / "agent", url, token, (f"{base}/{{user}}",), base / "spool")
    agent.start()
    try:
        yield gateway, agent
    finally:
        agent.stop()
        gateway.stop()


def test_a_cut_mid_submit_is_survived_and_makes_one_job(tmp_path: Path) -> None:
    with edge(tmp_path) as (gateway, agent), gateway.client(gateway.token("alice")) as alice:
        eventually(lambda: served(alice))
        _submit_across_a_cut(alice, agent, gateway.port, tmp_path / "spool")


def _submit_across_a_cut(alice: httpx.Client, agent: AgentProcess, port: int, spool: Path) -> None:
    warm = alice.post(f"{SYSTEM}/jobs", json={"script": "#!/bin/sh\ntrue\n"})  # makes the spool
    assert warm.status_code == 201 and (spool / "lock").exists(), warm.text
    name = f"cut-{uuid.uuid4().hex[:8]}"
    spec = {"script": "#!/bin/sh\ntrue\n", "name": name}
    redials = agent.log().count("reconnecting in")
    with ThreadPoolExecutor(1) as pool:
        lock, released = hold(spool / "lock"), False
        try:
            answer = pool.submit(alice.post, f"{SYSTEM}/jobs", json=spec)
            eventually(lambda: submitting(spool), 15)  # the agent runs it: held at the lock
            with cut(port):
                os.close(lock)  # the submit ends; its RESULT meets a reset (the gateway
                # learns of the break when the agent returns and replaces its old link)
                released = True
                # the agent's connection ended, and a redial was refused as well
                eventually(lambda: agent.log().count("reconnecting in") >= redials + 2, 15)
        finally:
            if not released:
                os.close(lock)
        response = answer.result()  # the agent returned: the gateway asked for the result
    assert response.status_code == 201, response.text
    (job,) = named(alice, name)  # one job: the submit was not sent again
    assert job["id"] == response.json()["id"], job
    assert len(list((spool / "jobs").iterdir())) == 2  # the engine too: the warm-up and it
    log = agent.log()
    assert "connection to the gateway ended" in log and log.count("connected to") >= 2, log
