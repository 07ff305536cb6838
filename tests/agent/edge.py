"""A gateway whose system ``edge`` (the embedded scheduler, ``transport = "agent"``) is served
by a real ``hpcgate-agent`` process, for the tests of what flows through the agent."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from tests.agent.test_agent_gateway import agent_token, started
from tests.support.accounts import give
from tests.support.agent_process import AgentProcess
from tests.support.gateway_process import GatewayProcess, new_gateway


@contextmanager
def edge_system(
    base: Path, users: Sequence[str], wait_seconds: int
) -> Iterator[tuple[GatewayProcess, AgentProcess]]:
    """Both started (each user's root and working directory under ``base``); both stopped
    on the way out, the agent first. ``wait_seconds``: how long a request for a service
    waits for a replica."""
    base.chmod(0o711)
    for name in users:
        (base / name).mkdir()
        give(base / name, name)
    config = f"""
service_interval = 0.2
service_wait_seconds = {wait_seconds}

[systems.edge]
scheduler = "embedded"
transport = "agent"
status_interval = 0.2
roots = ["{base}/{{user}}"]
workdir = "{base}/{{user}}"
spool = "{base}/spool"
"""
    gateway = new_gateway(base / "gateway-home", config)
    started(gateway)
    _, token = agent_token(gateway)
    agent = AgentProcess(base / "agent", gateway.url, token, (f"{base}/{{user}}",), base / "spool")
    agent.start()
    try:
        yield gateway, agent
    finally:
        agent.stop()
        gateway.stop()
