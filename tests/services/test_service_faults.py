"""Services under faults, on the embedded scheduler through a real gateway: a walltime
handover while streamed requests keep coming fails none of them; a request sent to a
replica whose server just died goes to another; a draining replica takes no new request;
an answer the replica breaks off is cut off for the caller too."""

from __future__ import annotations

import os
import signal
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import openai
import pytest

from tests.services.conftest import CONFIG
from tests.support.gateway_process import GatewayProcess
from tests.support.service_faults import closed, handover_under_load
from tests.support.services import (
    BACKEND,
    SERVICES,
    SYSTEM_PYTHON,
    bearer,
    create_service,
    in_state,
    services_gateway,
    wait_replicas,
)


def test_a_handover_under_streamed_load_fails_no_request(
    gateway: GatewayProcess, alice: httpx.Client
) -> None:
    """Its replica hands over 10 s after its start (a 30 s limit, 20 s ahead)."""
    name = create_service(alice, min_replicas=1, max_replicas=2, time_limit=30, handover_seconds=20)
    handover_under_load(gateway, alice, name)  # see there


def test_a_request_that_finds_its_replica_gone_goes_to_another(alice: httpx.Client) -> None:
    """Two ready replicas; one's server dies (its job lives on). Before the controller's
    health checks find it out, two requests at once (one per replica, by least in flight):
    the one sent to the dead server cannot connect, so nothing of it was sent, and it goes
    to the other replica instead of failing."""
    script = f"#!/bin/sh\n{SYSTEM_PYTHON} {BACKEND} &\nexec sleep 3600\n"  # the job outlives it
    name = create_service(alice, script=script, min_replicas=2, max_replicas=2)
    wait_replicas(alice, name, in_state("ready", 2))
    dead = alice.get(f"{SERVICES}/{name}/proxy/pid").json()
    os.kill(dead["pid"], signal.SIGKILL)
    closed(dead["port"])  # its pooled connection has seen its end too: it is not reused
    with ThreadPoolExecutor(2) as pool:
        answers = list(pool.map(lambda _: _streamed(alice, name), range(2)))
    assert [status for status, _ in answers] == [200, 200], answers
    assert dead["pid"] not in {pid for _, pid in answers}


def _streamed(client: httpx.Client, name: str, chunks: int = 3) -> tuple[int, int | None]:
    params = {"n": chunks, "delay": 0.2}
    with client.stream("GET", f"{SERVICES}/{name}/proxy/stream", params=params) as answer:
        lines = list(answer.iter_lines())
    return answer.status_code, int(lines[0].split()[3]) if answer.status_code == 200 else None


def test_a_draining_replica_takes_no_new_request(tmp_path: Path) -> None:
    """Scaled down from two replicas, one busy: the idle one drains, and from the moment
    it does no new request goes to it (though it serves the fewest), not only from the
    controller's next round (1 s apart here, so that one would come late)."""
    config = CONFIG.replace("service_interval = 0.2", "service_interval = 1")
    with (
        services_gateway(tmp_path / "home", config) as server,
        server.client(server.token("alice")) as client,
        ThreadPoolExecutor(1) as pool,
    ):
        name = create_service(client, min_replicas=2, max_replicas=2)
        wait_replicas(client, name, in_state("ready", 2))
        busy = pool.submit(_streamed, client, name, 20)  # 4 s on one replica
        wait_replicas(client, name, lambda rs: sum(r["in_flight"] for r in rs) == 1)
        scale = {"min_replicas": 1, "max_replicas": 1}
        assert client.patch(f"{SERVICES}/{name}", json=scale).status_code == 200
        found = wait_replicas(client, name, in_state("draining"))
        [draining] = [r for r in found if r["state"] == "draining"]
        answers = [client.get(f"{SERVICES}/{name}/proxy/pid") for _ in range(3)]
        assert busy.result()[0] == 200
    assert draining["in_flight"] == 0  # the idle one
    assert [a.status_code for a in answers] == [200] * 3
    assert draining["port"] not in {a.json()["port"] for a in answers}


def test_a_streamed_completion_cut_midway_fails_in_the_openai_client(
    gateway: GatewayProcess, alice: httpx.Client
) -> None:
    """The replica dies after the first event of a streamed completion: the ``openai``
    client's iteration raises, rather than ending as if the completion were whole."""
    model = f"m-{uuid.uuid4().hex[:8]}"
    name = create_service(alice, models=[model], min_replicas=1, max_replicas=1)
    wait_replicas(alice, name, in_state("ready"))
    pid = alice.get(f"{SERVICES}/{name}/proxy/pid").json()["pid"]
    with openai.OpenAI(
        base_url=f"{gateway.url}/v1", api_key=bearer(alice), max_retries=0
    ) as client:
        events = iter(client.completions.create(model=model, prompt="hi", stream=True))
        assert next(events).choices[0].text == "0 "
        os.kill(pid, signal.SIGKILL)
        with pytest.raises(openai.APIConnectionError) as raised:
            list(events)
    assert "incomplete chunked read" in str(raised.value.__cause__)
