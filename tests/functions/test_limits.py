"""A function's own rate limits (its registration's ``limits``), on a real gateway with real
workers: stored and shown, bounded (422), applied to each caller apart (a user, each API
key) but not to the owner's own token, combined with a key's own limits (the stricter
wins), and a 429 with Retry-After and the RateLimit fields that changes nothing."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.support.functions import ECHO, FOREVER, FUNCTIONS, invoked, register
from tests.support.gateway_process import GatewayProcess, user_client

alice = user_client("alice")
bob = user_client("bob")

TOKENS = "/api/v1/tokens"


@pytest.fixture
def key_of(gateway: GatewayProcess, alice: httpx.Client) -> Iterator[Any]:
    """Makes an API key of alice's for a function, with its own limits; a client holding it."""
    opened: list[httpx.Client] = []

    def make(name: str, **limits: int) -> httpx.Client:
        body: dict[str, Any] = {"functions": [name], "limits": limits or None}
        answer = alice.post(TOKENS, json=body)
        assert answer.status_code == 201, answer.text
        opened.append(gateway.client(answer.json()["token"]))
        return opened[-1]

    yield make
    for client in opened:
        client.close()


def invoke(client: httpx.Client, name: str, **params: str) -> httpx.Response:
    return client.post(f"{FUNCTIONS}/{name}/invoke", json={}, params=params)


def refused(answer: httpx.Response) -> dict[str, Any]:
    assert answer.status_code == 429, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    found: dict[str, Any] = answer.json()
    return found


def fields(answer: httpx.Response) -> tuple[str, str]:
    return answer.headers["ratelimit-policy"], answer.headers["ratelimit"]


def test_a_functions_limits_are_stored_shown_and_bounded(
    alice: httpx.Client, bob: httpx.Client
) -> None:
    name = register(alice, ECHO, users=["bob"], limits={"per_minute": 30, "concurrent": 2})
    limits = {"per_minute": 30, "concurrent": 2}
    assert alice.get(f"{FUNCTIONS}/{name}").json()["settings"]["limits"] == limits
    assert bob.get(f"{FUNCTIONS}/{name}").json()["settings"]["limits"] == limits  # a caller's
    plain = register(alice, ECHO)
    unset = {"per_minute": None, "concurrent": None}
    assert alice.get(f"{FUNCTIONS}/{plain}").json()["settings"]["limits"] == unset
    body = {"name": "g", "system": "local", "source": ECHO, "callable": "f"}
    for bad in (
        {"per_minute": 0},
        {"per_minute": 10_001},
        {"concurrent": True},
        {"concurrent": 0},
        {"per_hour": 5},
    ):
        answer = alice.post(FUNCTIONS, json={**body, "limits": bad})
        assert answer.status_code == 422, (bad, answer.text)
    assert alice.get(f"{FUNCTIONS}/g").status_code == 404  # nothing registered


def test_each_caller_has_its_own_calls_a_minute_and_the_owner_none(
    alice: httpx.Client, bob: httpx.Client, key_of: Any
) -> None:
    name = register(alice, ECHO, users=["bob"], limits={"per_minute": 2})
    for left in (1, 0):
        answer = invoke(bob, name)
        assert answer.status_code == 200, answer.text
        policy, rest = fields(answer)
        assert policy == '"function-per-minute";q=2;w=60'
        assert re.fullmatch(rf'"function-per-minute";r={left};t=\d+', rest), rest
    answer = invoke(bob, name)
    assert "2 calls a minute" in refused(answer)["detail"]
    retry = int(answer.headers["retry-after"])
    assert fields(answer) == (
        '"function-per-minute";q=2;w=60',
        f'"function-per-minute";r=0;t={retry}',
    )
    assert 1 <= retry <= 60
    assert len(bob.get(f"{FUNCTIONS}/{name}/invocations").json()) == 2  # no third recorded
    for _ in range(3):  # the owner's own token: none of the function's limits
        mine = invoke(alice, name)
        assert mine.status_code == 200 and "ratelimit" not in mine.headers
    key = key_of(name)  # the owner's key is a caller of its own, counted apart from bob
    assert [invoke(key, name).status_code for _ in range(3)] == [200, 200, 429]


def test_the_stricter_of_a_keys_and_a_functions_limits_wins(
    alice: httpx.Client, key_of: Any
) -> None:
    name = register(alice, ECHO, limits={"per_minute": 3})
    strict_key = key_of(name, per_minute=1)  # stricter than the function
    first = invoke(strict_key, name)
    assert first.status_code == 200, first.text
    policy, _ = fields(first)
    assert policy == '"per-minute";q=1;w=60, "function-per-minute";q=3;w=60'
    second = invoke(strict_key, name)
    assert "this API key may make 1 requests a minute" in refused(second)["detail"]
    assert fields(second)[0] == '"per-minute";q=1;w=60'
    loose_key = key_of(name, per_minute=100)  # the function is stricter
    assert [invoke(loose_key, name).status_code for _ in range(3)] == [200, 200, 200]
    fourth = invoke(loose_key, name)
    assert "3 calls a minute" in refused(fourth)["detail"]
    assert fields(fourth)[0] == '"function-per-minute";q=3;w=60'


def _detached(client: httpx.Client, name: str) -> str:
    """Start a detached invocation, read its first event and go away."""
    with invoked(client, name, {}, detach="true") as (key, events):
        assert next(events).event == "output"
    return key


def test_a_functions_unended_invocations_per_caller_and_a_slot_freed(
    alice: httpx.Client, bob: httpx.Client, key_of: Any
) -> None:
    name = register(alice, FOREVER, users=["bob"], max_concurrency=8, limits={"concurrent": 1})
    key = key_of(name, concurrent=2)  # its own limit is looser: the function's wins
    first = _detached(key, name)
    answer = invoke(key, name, detach="true")
    assert "1 unended invocations" in refused(answer)["detail"]
    assert answer.headers["retry-after"] == "5"
    assert fields(answer) == (
        '"function-concurrent";q=1;qu="concurrent-requests"',
        '"function-concurrent";r=0',
    )
    bobs = _detached(bob, name)  # another caller: a slot of its own
    owners = [_detached(alice, name), _detached(alice, name)]  # the owner: no limit
    assert len(alice.get(f"{FUNCTIONS}/{name}/invocations").json()) == 4  # none refused kept
    assert key.delete(f"{FUNCTIONS}/{name}/invocations/{first}").json()["state"] == "cancelled"
    again = _detached(key, name)  # the slot is free again
    for started in (bobs, *owners, again):
        assert alice.delete(f"{FUNCTIONS}/{name}/invocations/{started}").status_code == 200
