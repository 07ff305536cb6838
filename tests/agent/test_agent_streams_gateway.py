"""Services and functions on a system served by an agent: a real gateway, a real
``hpcgate-agent`` process (embedded scheduler), the test backend as a user's service and
a function's worker, each a real job the agent started; every byte between the gateway and
them goes through the agent's one WebSocket as a byte stream."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.agent.edge import edge_system
from tests.agent.test_agent_gateway import eventually
from tests.support.functions import FUNCTIONS, SLOW, data, delete_all, invoked, register
from tests.support.gateway_process import GatewayProcess
from tests.support.service_backend import SLOW_EVENTS
from tests.support.services import (
    SERVICES,
    admin_token,
    create_service,
    in_state,
    stop_services,
    wait_replicas,
)


@pytest.fixture(scope="module")
def edge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    """The gateway with its agent connected; on the way out the replicas and workers are
    stopped through it (while the agent still serves), then the agent and the gateway."""
    base = tmp_path_factory.mktemp("agent-streams")
    with edge_system(base, ("alice", "bob"), 60) as (gateway, _):
        yield gateway
        with gateway.client(gateway.token("alice")) as alice:
            delete_all(alice, system="edge")
        stop_services(gateway.url, admin_token(gateway.home), [gateway.token("alice")])


@pytest.fixture(scope="module")
def alice(edge: GatewayProcess) -> Iterator[httpx.Client]:
    with edge.client(edge.token("alice")) as client:
        eventually(lambda: client.get("/api/v1/systems/edge").json()["healthy"], 60)
        yield client


@pytest.fixture(scope="module")
def service(alice: httpx.Client) -> str:
    """A service of alice's on ``edge`` (one replica: the agent's engine has two slots, one
    for it and one for a function's worker)."""
    return create_service(alice, system="edge", min_replicas=1, max_replicas=1)


def test_a_service_on_an_agent_system_is_proxied_with_its_streams(
    alice: httpx.Client, service: str
) -> None:
    name = service
    [replica] = wait_replicas(alice, name, in_state("ready"), timeout=120)
    proxy = f"{SERVICES}/{name}/proxy"
    seen = alice.get(f"{proxy}/pid").json()
    assert seen["port"] == replica["port"]
    body = b"".join(f"piece {i}\n".encode() * 4000 for i in range(40))  # beyond one window
    assert alice.post(f"{proxy}/echo", content=body).content == body
    arrived = []
    with alice.stream("GET", f"{proxy}/stream", params={"n": 4, "delay": 0.3}) as answer:
        assert answer.status_code == 200
        arrived = [time.monotonic() for _ in answer.iter_lines()]
    assert len(arrived) == 4 and arrived[-1] - arrived[0] > 0.6  # as sent, not at the end
    request = {"model": "m", "prompt": "hello", "stream": True}
    with alice.stream("POST", f"{proxy}/v1/completions", json=request) as answer:
        assert answer.status_code == 200
        assert answer.headers["content-type"].startswith("text/event-stream")
        events = [line.removeprefix("data: ") for line in answer.iter_lines() if line]
    assert events[-1] == "[DONE]"
    texts = [json.loads(event)["choices"][0]["text"] for event in events[:-1]]
    assert texts == [f"{index} " for index in range(SLOW_EVENTS)]


def test_a_function_on_an_agent_system_streams_its_output(alice: httpx.Client) -> None:
    name = register(alice, SLOW, system="edge")
    with invoked(alice, name, {"count": 3, "pause": 0.2}) as (_, events):
        seen = list(events)
    assert [data(e) for e in seen if e.event == "output"] == [0, 1, 2]
    assert (seen[-1].event, data(seen[-1])) == ("result", "done")
    whole = alice.post(f"{FUNCTIONS}/{name}/invoke", json={"count": 2, "pause": 0})
    assert whole.status_code == 200, whole.text
    assert whole.json()["result"] == "done"
