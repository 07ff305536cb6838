"""The gateway follows all of a worker's invocations over one connection to it (see
:mod:`hpcgate.functions.mux`): held streams cost no connection to the worker each, and a
client that reads nothing holds back its own invocation only; every event still arrives
once, in order."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path

import httpx

from tests.support.functions import FUNCTIONS, data, register, wait_workers
from tests.support.gateway_process import GatewayProcess, user_client
from tests.support.services import bearer
from tests.support.sse import Event, _parse

alice = user_client("alice")

HELD = 60
#: One yield, then a wait until the release file exists (one poller for all of them).
HOLD = """
import asyncio, os

_released = {}

async def _poll(path, event):
    while not os.path.exists(path):
        await asyncio.sleep(0.1)
    event.set()

async def f(i, release):
    yield i
    if release not in _released:
        _released[release] = asyncio.Event()
        asyncio.ensure_future(_poll(release, _released[release]))
    await _released[release].wait()
"""
CHUNKS = "def f(n):\n    for i in range(n):\n        yield str(i) + ' ' + 'x' * 65536\n"


def _connections_to(port: int) -> int:
    """Established TCP connections to ``port`` on this host (the gateway's to the worker)."""
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "01" and int(fields[2].rsplit(":", 1)[1], 16) == port:
                count += 1
    return count


async def _hold(gateway: GatewayProcess, token: str, name: str, release: Path) -> int:
    """HELD invocations open at once, each past its first event; the connections to the
    worker counted while they are; then each read to its own result."""
    headers = {"Authorization": f"Bearer {token}", "Accept": "text/event-stream"}
    limits = httpx.Limits(max_connections=HELD)
    url = f"{FUNCTIONS}/{name}/invoke"
    async with httpx.AsyncClient(
        base_url=gateway.url, headers=headers, limits=limits, timeout=120
    ) as client:
        opened = asyncio.Semaphore(8)  # a few at a time: submits need no crowd of connections
        firsts: list[asyncio.Event] = [asyncio.Event() for _ in range(HELD)]

        async def one(i: int) -> list[Event]:
            body = {"i": i, "release": str(release)}
            async with opened:
                answer_cm = client.stream("POST", url, json=body)
                answer = await answer_cm.__aenter__()
            try:
                assert answer.status_code == 200, await answer.aread()
                lines = answer.aiter_lines()
                got: list[str] = []
                async for line in lines:
                    got.append(line)
                    if not line and any(g.startswith("event: output") for g in got):
                        firsts[i].set()
                        break
                got += [line async for line in lines]
                return list(_parse(iter(got)))
            finally:
                await answer_cm.__aexit__(None, None, None)

        tasks = [asyncio.ensure_future(one(i)) for i in range(HELD)]
        await asyncio.wait_for(asyncio.gather(*(f.wait() for f in firsts)), 120)
        with _sync(gateway, token) as api:
            workers = [w for w in wait_workers(api, name) if w["state"] == "ready"]
        connections = _connections_to(workers[0]["port"])
        await asyncio.to_thread(release.touch)
        for i, events in enumerate(await asyncio.gather(*tasks)):
            assert [(e.id, e.event) for e in events] == [("1", "output"), ("2", "result")]
            assert [data(e) for e in events] == [i, None]
    return connections


def _sync(gateway: GatewayProcess, token: str) -> httpx.Client:
    return httpx.Client(base_url=gateway.url, headers={"Authorization": f"Bearer {token}"})


def test_held_streams_share_one_connection_to_their_worker(
    gateway: GatewayProcess, alice: httpx.Client
) -> None:
    name = register(
        alice, HOLD, concurrency="async", max_concurrency=HELD, min_workers=1, max_workers=1
    )
    wait_workers(alice, name, timeout=120)
    release = Path("/tmp") / f"hpcgate-release-{uuid.uuid4().hex}"
    try:
        connections = asyncio.run(_hold(gateway, bearer(alice), name, release))
    finally:
        release.unlink(missing_ok=True)
    # one carries every held stream's events; the others are the submits' kept-alive ones
    assert connections <= 10, connections


def test_a_client_that_reads_nothing_holds_back_its_own_invocation_only(
    alice: httpx.Client,
) -> None:
    """A's client stops reading; B, on the same worker and connection, streams 13 MiB to
    its end meanwhile; then A's client reads on and gets every event once, in order."""
    name = register(alice, CHUNKS, min_workers=1, max_workers=1)
    wait_workers(alice, name, timeout=120)
    headers = {"Accept": "text/event-stream"}
    url = f"{FUNCTIONS}/{name}/invoke"
    with alice.stream("POST", url, json={"n": 300}, headers=headers) as slow:
        assert slow.status_code == 200
        lines = slow.iter_lines()
        assert next(lines).startswith("id: 1")
        started = time.monotonic()
        fast = alice.post(url, json={"n": 200}, headers=headers)
        assert fast.status_code == 200
        events = list(_parse(fast.iter_lines()))
        assert [e.id for e in events] == [str(seq) for seq in range(1, 202)]
        assert [e.event for e in events[-2:]] == ["output", "result"]
        assert time.monotonic() - started < 60
        rest = list(_parse(iter(["id: 1", *lines])))
    assert [e.id for e in rest] == [str(seq) for seq in range(1, 302)]
    outputs = [data(e).split(" ")[0] for e in rest[:-1]]
    assert outputs == [str(i) for i in range(300)]
