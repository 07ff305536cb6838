"""A thousand invocations at once against the real gateway and its real worker (a job on
the embedded scheduler): every one completes, each with its own result, none lost and none
run twice, half of them streamed and half answered whole."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from typing import Any

import httpx

from tests.support.functions import FUNCTIONS, data, register, wait_workers
from tests.support.gateway_process import GatewayProcess, user_client
from tests.support.services import bearer
from tests.support.sse import Event, _parse

alice = user_client("alice")

INVOCATIONS = 1000
#: Each run counts its calls in the worker, so one run twice would show a count of 2.
SOURCE = """
import asyncio
import collections

runs = collections.Counter()

async def f(n):
    runs[n] += 1
    await asyncio.sleep(0.05)
    return {"n": n, "square": n * n, "runs": runs[n]}
"""
#: What a loaded two-core machine needs for all of them (about 10 s on a quiet one).
BOUND_SECONDS = 120


async def streamed(client: httpx.AsyncClient, url: str, n: int) -> tuple[str, list[Event]]:
    headers = {"Accept": "text/event-stream"}
    async with client.stream("POST", url, json={"n": n}, headers=headers) as answer:
        assert answer.status_code == 200, await answer.aread()
        lines = [line async for line in answer.aiter_lines()]
    return answer.headers["hpcgate-invocation"], list(_parse(iter(lines)))


async def whole(client: httpx.AsyncClient, url: str, n: int) -> tuple[str, Any]:
    answer = await client.post(url, json={"n": n})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["state"] == "succeeded" and body["output"] == [], body
    return body["id"], body["result"]


async def invoke_all(gateway: GatewayProcess, token: str, name: str) -> dict[int, Any]:
    """Every n invoked at once (odd ones streamed); each n's invocation id and result."""
    limits = httpx.Limits(max_connections=INVOCATIONS, max_keepalive_connections=0)
    auth = {"Authorization": f"Bearer {token}"}
    url = f"{FUNCTIONS}/{name}/invoke"
    async with httpx.AsyncClient(
        base_url=gateway.url, headers=auth, limits=limits, timeout=BOUND_SECONDS
    ) as client:

        async def one(n: int) -> tuple[str, Any]:
            if n % 2 == 0:
                return await whole(client, url, n)
            key, events = await streamed(client, url, n)
            assert [(e.event, e.id) for e in events] == [("result", "1")], events
            return key, data(events[0])

        done = await asyncio.gather(*(one(n) for n in range(INVOCATIONS)))
    return dict(enumerate(done))


def test_a_thousand_invocations_at_once_all_complete_each_once(
    gateway: GatewayProcess, alice: httpx.Client
) -> None:
    name = register(alice, SOURCE, concurrency="async", max_concurrency=1000, min_workers=1)
    wait_workers(alice, name, timeout=120)
    started = time.monotonic()
    done = asyncio.run(invoke_all(gateway, bearer(alice), name))
    took = time.monotonic() - started
    assert took < BOUND_SECONDS
    results = {n: result for n, (_, result) in done.items()}
    assert results == {n: {"n": n, "square": n * n, "runs": 1} for n in range(INVOCATIONS)}
    keys = [key for key, _ in done.values()]
    assert len(set(keys)) == INVOCATIONS
    listed = alice.get(f"{FUNCTIONS}/{name}/invocations", params={"limit": 1000}).json()
    assert {i["id"] for i in listed} == set(keys)
    assert Counter(i["state"] for i in listed) == {"succeeded": INVOCATIONS}
    assert {i["events"] for i in listed} == {1}
