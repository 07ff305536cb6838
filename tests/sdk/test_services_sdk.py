"""``client.services``, ``client.usage`` and ``client.openai_client`` of the SDK, blocking and
asyncio, against a real gateway whose services run the test backend as real jobs on the
embedded scheduler."""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from hpcgate.client import AsyncClient, Client, GatewayUnreachable, ValidationFailed
from hpcgate.model.errors import Forbidden, Invalid, NotFound
from hpcgate.model.services import ReplicaState, Service, ServiceEvent
from hpcgate.model.usage import Usage
from tests.sdk.conftest import SERVICES_CONFIG
from tests.support.gateway_process import GatewayProcess, new_gateway
from tests.support.services import backend_script

MODEL = "echo-model"


@pytest.fixture
def hpc(services_gw: GatewayProcess, services_tokens: dict[str, str]) -> Iterator[Client]:
    with Client(services_gw.url, services_tokens["alice"]) as client:
        yield client


@pytest.fixture
async def ahpc(
    services_gw: GatewayProcess, services_tokens: dict[str, str]
) -> AsyncIterator[AsyncClient]:
    async with AsyncClient(services_gw.url, services_tokens["alice"]) as client:
        yield client


@pytest.fixture
def own(hpc: Client) -> Iterator[str]:
    """A service of alice's with one ready replica; deleted afterwards."""
    name = f"s{uuid.uuid4().hex[:8]}"
    hpc.services.create(name, "local", backend_script(), min_replicas=1, max_replicas=2)
    yield name
    with contextlib.suppress(NotFound):
        hpc.services.delete(name)


def _ready(service: Service) -> list[int]:
    return [r.port for r in service.replicas if r.state is ReplicaState.READY]


def test_a_service_is_started_listed_reached_scaled_and_stopped(hpc: Client, own: str) -> None:
    service = hpc.services.wait(own, timeout=60)
    [port] = _ready(service)
    assert service.owner == "alice" and service.spec.system == "local"
    assert {s.name for s in hpc.services.list()} >= {"echo", own}
    answer = hpc.services.request(own, "GET", "/pid", params={"q": "a b"})
    assert answer.status_code == 200 and answer.json()["port"] == port
    assert hpc.services.request(own, "POST", "echo", content=b"x" * 70_000).content == (
        b"x" * 70_000
    )
    with hpc.services.stream(own, "GET", "/stream", params={"n": 3, "delay": 0.05}) as answer:
        assert len(list(answer.iter_lines())) == 3
    assert hpc.services.url(own, "/a b") == f"{hpc.base_url}/api/v1/services/{own}/proxy/a%20b"
    scaled = hpc.services.update(own, min_replicas=2)
    assert (scaled.spec.min_replicas, scaled.spec.max_replicas) == (2, 2)
    assert len(_ready(hpc.services.wait(own, ready=2, timeout=60))) == 2
    assert hpc.services.delete(own).stopping


def test_a_services_own_error_answer_is_returned_not_raised(hpc: Client) -> None:
    """The replica's 404 is the service's answer; the gateway's 404 (no such service) is
    raised."""
    hpc.services.wait("echo", timeout=60)
    answer = hpc.services.request("echo", "GET", "/no/such/path")
    assert (answer.status_code, answer.text) == (404, "no such path")
    with pytest.raises(NotFound, match="no service 'nope'"):
        hpc.services.request("nope", "GET", "/pid")


def test_unknown_services_and_bad_scales_are_clear_errors(hpc: Client, own: str) -> None:
    for call in (
        lambda: hpc.services.get("nope"),
        lambda: hpc.services.update("nope", max_replicas=1),
        lambda: hpc.services.delete("nope"),
        lambda: next(iter(hpc.services.events("nope"))),
    ):
        with pytest.raises(NotFound, match="no service 'nope'"):
            call()
    with pytest.raises(Invalid, match=r"min_replicas \(3\) must not exceed max_replicas \(2\)"):
        hpc.services.update(own, min_replicas=3, max_replicas=2)
    assert hpc.services.get(own).spec.max_replicas == 2  # unchanged
    name = f"bad{uuid.uuid4().hex[:6]}"
    with pytest.raises(ValidationFailed, match="min_replicas must not exceed max_replicas"):
        hpc.services.create(name, "local", backend_script(), min_replicas=3, max_replicas=2)
    with pytest.raises(ValidationFailed, match="'#!'"):
        hpc.services.create(name, "local", "python server.py")
    assert name not in {s.name for s in hpc.services.list()}
    with pytest.raises(Forbidden, match="only an admin"):
        hpc.services.delete("echo")  # declared: not alice's to change
    with pytest.raises(ValueError, match=r"'\.\.' segments"):
        hpc.services.request(own, "GET", "/a/../../../systems")


def test_a_service_not_shared_with_a_user_is_not_found_for_it(
    services_gw: GatewayProcess, services_tokens: dict[str, str], own: str
) -> None:
    with Client(services_gw.url, services_tokens["bob"]) as bob:
        assert bob.services.list() == []
        for name in ("echo", own):
            with pytest.raises(NotFound):
                bob.services.get(name)


def test_events_carry_stderr_and_changes_of_state(hpc: Client, own: str) -> None:
    hpc.services.wait(own, timeout=60)

    def until_stopped() -> list[ServiceEvent]:
        seen: list[ServiceEvent] = []
        for event in hpc.services.events(own):
            if not seen:  # the stream is open: what happens now is sent
                hpc.services.update(own, min_replicas=0, max_replicas=0)
            seen.append(event)
            if event.state in (ReplicaState.STOPPED, ReplicaState.FAILED):
                return seen
        raise AssertionError("the stream ended")

    with ThreadPoolExecutor(1) as pool:
        seen = pool.submit(until_stopped).result(timeout=90)
    states = [event.state for event in seen if event.kind == "state"]
    assert ReplicaState.DRAINING in states and states[-1] is ReplicaState.STOPPED


def test_usage_and_the_openai_client(
    hpc: Client, services_gw: GatewayProcess, services_tokens: dict[str, str]
) -> None:
    hpc.services.wait("echo", timeout=60)
    before = sum(u.requests for u in hpc.usage(model=MODEL))
    with hpc.openai_client(max_retries=0) as openai:
        assert MODEL in [model.id for model in openai.models.list()]
        chunks = list(openai.completions.create(model=MODEL, prompt="hi", stream=True))
    assert "".join(c.choices[0].text for c in chunks) == "0 1 2 3 4 "
    settings = hpc.openai_settings()
    assert (settings.base_url, settings.api_key) == (f"{services_gw.url}/v1", hpc.token)
    rows = _wait_usage(hpc, before + 1)
    assert {(u.user, u.service, u.owner) for u in rows} == {("alice", "echo", None)}
    assert sum(u.completion_tokens for u in rows) >= 5
    assert hpc.usage(model=MODEL, since=datetime.now() + timedelta(days=1)) == []
    with pytest.raises(ValidationFailed):
        hpc.usage(service="Not A Name")
    with Client(services_gw.url, services_tokens["root"]) as admin:
        assert {u.user for u in admin.usage(user="alice", model=MODEL)} == {"alice"}


def _wait_usage(hpc: Client, requests: int) -> list[Usage]:
    """Usage is stored behind the answers: wait a little for it."""
    for _ in range(100):
        rows = hpc.usage(model=MODEL)
        if sum(u.requests for u in rows) >= requests:
            return rows
        time.sleep(0.1)
    raise AssertionError(f"usage never reached {requests} requests")


def test_openai_client_without_openai_installed_says_how_to_get_it(
    hpc: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A stand-in for a client installed without openai: the import fails as it would."""
    monkeypatch.setitem(sys.modules, "openai", None)
    with pytest.raises(ImportError, match=r"hpcgate-client\[openai\]"):
        hpc.openai_client()


async def test_the_async_twin(ahpc: AsyncClient) -> None:
    name = f"a{uuid.uuid4().hex[:8]}"
    await ahpc.services.create(name, spec={"system": "local", "script": backend_script()})
    try:
        assert (await ahpc.services.get(name)).replicas == []  # min 0: none until asked
        answer = await ahpc.services.request(name, "GET", "pid", timeout=60)  # waits for one
        [port] = _ready(await ahpc.services.get(name))
        assert answer.json()["port"] == port
        async with ahpc.services.stream(name, "GET", "/stream", params={"n": 2}) as streamed:
            assert len([line async for line in streamed.aiter_lines()]) == 2
        async with asyncio.timeout(60):
            async for event in ahpc.services.events(name):
                if event.kind == "stderr" and "backend pid" in (event.text or ""):
                    break
        with pytest.raises(Invalid):
            await ahpc.services.update(name, min_replicas=5, max_replicas=1)
        with pytest.raises(NotFound):
            await ahpc.services.get("nope")
        assert isinstance(await ahpc.usage(since=datetime.now()), list)
        async with ahpc.openai_client(max_retries=0) as openai:
            assert MODEL in [model.id async for model in openai.models.list()]
    finally:
        assert (await ahpc.services.delete(name)).stopping


def test_a_broken_event_stream_is_an_error_not_a_quiet_end(tmp_path: Path) -> None:
    """The gateway goes away under an open stream: the events cannot be resumed (the
    gateway keeps none), so the iterator says so instead of ending as if all was said."""
    gateway = new_gateway(tmp_path / "home", SERVICES_CONFIG.split("[services.echo]")[0])
    gateway.start()
    try:
        with Client(gateway.url, gateway.token("alice")) as hpc:
            hpc.services.create("idle", "local", backend_script())  # no replica: no events
            events = hpc.services.events("idle")

            def read() -> None:
                next(iter(events))

            with ThreadPoolExecutor(1) as pool:
                reading = pool.submit(read)
                time.sleep(1)  # the stream is open, waiting
                gateway.stop()
                with pytest.raises(GatewayUnreachable, match="cannot be resumed"):
                    reading.result(timeout=60)
    finally:
        gateway.stop()
