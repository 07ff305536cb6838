"""A stream through an agent whose process is killed (-9) mid-answer: the proxied answer is
cut off at once (not left hanging until a timeout), and the system serves again when the
agent returns. A real gateway, a real agent process, the test backend as a replica."""

from __future__ import annotations

import signal
from collections.abc import Iterator

import httpx
import pytest

from tests.agent.edge import edge_system
from tests.agent.test_agent_gateway import eventually
from tests.support.agent_process import AgentProcess
from tests.support.gateway_process import GatewayProcess
from tests.support.services import (
    SERVICES,
    admin_token,
    create_service,
    in_state,
    stop_services,
    wait_replicas,
)


@pytest.fixture(scope="module")
def edge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[GatewayProcess, AgentProcess]]:
    base = tmp_path_factory.mktemp("agent-faults")
    with edge_system(base, ("alice",), 10) as (gateway, agent):
        yield gateway, agent
        if agent.process is None:  # the test stopped it and failed before its return
            agent.start()
        stop_services(gateway.url, admin_token(gateway.home), [gateway.token("alice")])


def read_killing_after(
    client: httpx.Client, url: str, agent: AgentProcess, count: int
) -> tuple[list[str], Exception | None]:
    """Read a 100-line stream, killing the agent (-9) after ``count`` lines: the lines
    read, and the error that ended the reading (None: it ended cleanly)."""
    lines: list[str] = []
    try:
        with client.stream("GET", url, params={"n": 100, "delay": 0.1}, timeout=20) as answer:
            for line in answer.iter_lines():
                lines.append(line)
                if len(lines) == count:
                    agent.stop(signal.SIGKILL)
    except httpx.HTTPError as exc:
        return lines, exc
    return lines, None


def test_a_stream_cut_by_the_agents_death_ends_at_once_and_the_agent_returns(
    edge: tuple[GatewayProcess, AgentProcess],
) -> None:
    gateway, agent = edge
    with gateway.client(gateway.token("alice")) as alice:
        eventually(lambda: alice.get("/api/v1/systems/edge").json()["healthy"], 60)
        name = create_service(alice, system="edge", min_replicas=1, max_replicas=1)
        wait_replicas(alice, name, in_state("ready"), timeout=120)
        lines, cut = read_killing_after(alice, f"{SERVICES}/{name}/proxy/stream", agent, 2)
        # cut off by the broken stream, not by the client's own timeout
        assert isinstance(cut, httpx.HTTPError) and not isinstance(cut, httpx.TimeoutException)
        assert 2 <= len(lines) < 100
        agent.start()  # the replica's job outlived the agent: it is reached again
        eventually(lambda: alice.get(f"{SERVICES}/{name}/proxy/pid").status_code == 200, 90)
