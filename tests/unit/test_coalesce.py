"""Concurrent cache misses of one key share one load."""

from __future__ import annotations

import asyncio

import pytest

from hpcgate.coalesce import Coalesced


class Loads:
    """Counts calls; each waits until ``release`` is set."""

    def __init__(self) -> None:
        self.calls = 0
        self.release = asyncio.Event()

    async def value(self) -> int:
        self.calls += 1
        number = self.calls
        await self.release.wait()
        return number

    async def failure(self) -> int:
        self.calls += 1
        await self.release.wait()
        raise LookupError("the database said no")


async def test_a_hundred_misses_read_once_and_all_get_the_value() -> None:
    loads, shared = Loads(), Coalesced[str, int]()
    waiting = [asyncio.create_task(shared.load("k", loads.value)) for _ in range(100)]
    other = asyncio.create_task(shared.load("other", loads.value))
    await asyncio.sleep(0.01)
    loads.release.set()
    values = await asyncio.gather(*waiting)
    assert len(set(values)) == 1  # one load's value for all hundred
    assert loads.calls == 2 and {values[0], await other} == {1, 2}
    assert await shared.load("k", loads.value) == 3  # done: the next miss loads again


async def test_a_failure_reaches_every_waiter() -> None:
    loads, shared = Loads(), Coalesced[str, int]()
    waiting = [asyncio.create_task(shared.load("k", loads.failure)) for _ in range(5)]
    await asyncio.sleep(0.01)
    loads.release.set()
    for task in waiting:
        with pytest.raises(LookupError):
            await task
    assert loads.calls == 1


async def test_a_cancelled_caller_leaves_the_load_to_the_others() -> None:
    loads, shared = Loads(), Coalesced[str, int]()
    first = asyncio.create_task(shared.load("k", loads.value))
    second = asyncio.create_task(shared.load("k", loads.value))
    await asyncio.sleep(0.01)
    first.cancel()
    loads.release.set()
    assert await second == 1 and loads.calls == 1
    assert first.cancelled()
