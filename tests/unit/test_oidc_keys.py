"""The key cache's rules, on a JWKS document served by a function and a clock the test
moves (the real provider's rotation and outage are in tests/oidc/test_keys.py)."""

from __future__ import annotations

from typing import Any

from joserfc.jwk import RSAKey

from hpcgate.identity.keys import KeyCache
from hpcgate.model.errors import Unavailable


class Jwks:
    """A JWKS endpoint in memory: what it serves, whether it is down, how often it was read."""

    def __init__(self, *kids: str) -> None:
        self.keys = {kid: RSAKey.generate_key(2048, parameters={"kid": kid}) for kid in kids}
        self.down = False
        self.reads = 0

    async def fetch(self) -> dict[str, Any]:
        self.reads += 1
        if self.down:
            raise Unavailable("the keys cannot be read")
        return {"keys": [key.as_dict(private=False) for key in self.keys.values()]}


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_unknown_key_ids_refetch_at_most_once_an_interval() -> None:
    jwks, clock = Jwks("a"), Clock()
    cache = KeyCache(jwks.fetch, 10, clock)
    assert await cache.get("a") is not None
    for n in range(100):
        assert await cache.get(f"made-up-{n}") is None
    assert jwks.reads == 1
    clock.now += 10
    jwks.keys |= Jwks("b").keys  # rotated: a new key appears
    assert await cache.get("b") is not None
    assert jwks.reads == 2


async def test_an_outage_keeps_the_known_keys_and_a_new_set_drops_retired_ones() -> None:
    jwks, clock = Jwks("a", "b"), Clock()
    cache = KeyCache(jwks.fetch, 10, clock)
    assert await cache.get("a") is not None
    jwks.down, clock.now = True, clock.now + 10
    assert await cache.get("c") is None  # a failed read...
    assert await cache.get("a") is not None  # ...keeps what was known
    jwks.down, clock.now = False, clock.now + 10
    del jwks.keys["a"]
    assert await cache.get("c") is None  # read again: 'a' is retired
    assert await cache.get("a") is None and await cache.get("b") is not None
    assert jwks.reads == 3
