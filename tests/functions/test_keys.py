"""API keys for publishing functions, on a real gateway with real workers: what a key may
do (invoke its functions, read the invocations it started) and may not (anything else), who
may make one, and its limits (requests per minute, unended invocations): past either a 429
that changes nothing, while its owner's own token goes on as before."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.support.functions import ECHO, FOREVER, FUNCTIONS, invocation, invoked, register
from tests.support.gateway_process import GatewayProcess, user_client
from tests.support.services import SERVICES

alice = user_client("alice")
bob = user_client("bob")

TOKENS = "/api/v1/tokens"


def make_key(client: httpx.Client, *names: str, **limits: int) -> dict[str, Any]:
    body: dict[str, Any] = {"functions": list(names), "description": "web app"}
    if limits:
        body["limits"] = limits
    answer = client.post(TOKENS, json=body)
    assert answer.status_code == 201, answer.text
    made: dict[str, Any] = answer.json()
    return made


@pytest.fixture
def keyed(gateway: GatewayProcess) -> Iterator[Any]:
    """Makes HTTP clients holding an API key's secret."""
    opened: list[httpx.Client] = []

    def client(key: dict[str, Any]) -> httpx.Client:
        made = gateway.client(key["token"])
        opened.append(made)
        return made

    yield client
    for made in opened:
        made.close()


def refused(answer: httpx.Response, status: int) -> dict[str, Any]:
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    found: dict[str, Any] = answer.json()
    return found


def test_a_key_invokes_its_function_and_reaches_nothing_else(
    alice: httpx.Client, keyed: Any
) -> None:
    name, other = register(alice, ECHO), register(alice, ECHO)
    made = make_key(alice, name)
    assert (made["functions"], made["scopes"]) == ([name], ["jobs:read", "jobs:write"])
    key = keyed(made)
    answer = key.post(f"{FUNCTIONS}/{name}/invoke", json={"x": 7})
    assert answer.status_code == 200, answer.text
    assert answer.json()["result"] == {"x": 7}
    mine = answer.headers["hpcgate-invocation"]
    assert [f["name"] for f in key.get(FUNCTIONS).json()] == [name]
    assert key.get(f"{FUNCTIONS}/{name}").json()["source"] is None  # not its owner
    refused(key.post(f"{FUNCTIONS}/{other}/invoke", json={}), 404)
    refused(key.get(f"{FUNCTIONS}/{other}"), 404)
    refused(key.get(f"{FUNCTIONS}/alice:{other}"), 404)
    for path in ("/api/v1/systems/local/jobs", "/api/v1/systems/local/files/ls", SERVICES):
        refused(key.get(path, params={"path": "/tmp"}), 403)
    refused(key.get(TOKENS), 403)
    refused(key.post(TOKENS, json={}), 403)  # a key mints nothing
    refused(key.post(TOKENS, json={"functions": [name]}), 403)
    refused(key.post(FUNCTIONS, json={"name": "g", "system": "local", "source": ECHO}), 403)
    refused(key.delete(f"{FUNCTIONS}/{name}"), 403)
    assert alice.get(f"{FUNCTIONS}/{name}").status_code == 200  # still there
    # The owner's own invocations are not the key's to see; the key's are the owner's.
    own = alice.post(f"{FUNCTIONS}/{name}/invoke", json={}).headers["hpcgate-invocation"]
    assert [i["id"] for i in key.get(f"{FUNCTIONS}/{name}/invocations").json()] == [mine]
    refused(key.get(f"{FUNCTIONS}/{name}/invocations/{own}"), 404)
    refused(key.delete(f"{FUNCTIONS}/{name}/invocations/{own}"), 404)
    refused(key.get(f"{FUNCTIONS}/{name}/invocations/{own}/events"), 404)
    assert invocation(alice, name, mine)["key"] == made["id"]
    assert invocation(alice, name, own)["key"] is None


def test_a_key_is_made_by_the_owner_for_its_own_functions_only(
    alice: httpx.Client, bob: httpx.Client
) -> None:
    name = register(alice, ECHO, users=["bob"])  # shared with bob: still not his to publish
    refused(bob.post(TOKENS, json={"functions": [name]}), 404)
    refused(bob.post(TOKENS, json={"functions": [name], "user": "alice"}), 403)
    refused(alice.post(TOKENS, json={"functions": ["nosuchfn"]}), 404)
    refused(alice.post(TOKENS, json={"functions": [name], "scopes": ["files:read"]}), 422)
    refused(alice.post(TOKENS, json={"limits": {"per_minute": 5}}), 422)
    for limits in ({"per_minute": 0}, {"per_minute": True}, {"concurrent": 10_001}):
        refused(alice.post(TOKENS, json={"functions": [name], "limits": limits}), 422)
    refused(alice.post(TOKENS, json={"functions": ["Not A Name"]}), 422)
    listed = {t["id"]: t for t in alice.get(TOKENS).json()}
    made = make_key(alice, name, per_minute=5, concurrent=2)
    shown = alice.get(TOKENS).json()
    assert len(shown) == len(listed) + 1
    [new] = [t for t in shown if t["id"] not in listed]
    assert (new["functions"], new["limits"]) == ([name], {"per_minute": 5, "concurrent": 2})
    assert "token" not in new and made["id"] == new["id"]


def test_a_key_issued_by_a_read_only_token_cannot_invoke(
    gateway: GatewayProcess, alice: httpx.Client, keyed: Any
) -> None:
    name = register(alice, ECHO)
    with gateway.client(gateway.token("alice", "jobs:read")) as reader:
        made = make_key(reader, name)
    assert made["scopes"] == ["jobs:read"]
    refused(keyed(made).post(f"{FUNCTIONS}/{name}/invoke", json={}), 403)


def _quota(answer: httpx.Response) -> tuple[str, str]:
    return answer.headers["ratelimit-policy"], answer.headers["ratelimit"]


def test_past_its_requests_per_minute_a_key_is_refused_and_nothing_is_done(
    alice: httpx.Client, keyed: Any
) -> None:
    name = register(alice, ECHO)  # no worker until invoked
    key = keyed(make_key(alice, name, per_minute=2))
    first = key.get(f"{FUNCTIONS}/{name}")
    assert first.status_code == 200
    assert _quota(first) == ('"per-minute";q=2;w=60', '"per-minute";r=1;t=60')
    assert key.get(f"{FUNCTIONS}/{name}/invocations").status_code == 200
    answer = key.post(f"{FUNCTIONS}/{name}/invoke", json={})
    problem = refused(answer, 429)
    assert "2 requests a minute" in problem["detail"]
    assert 1 <= int(answer.headers["retry-after"]) <= 60
    policy, left = _quota(answer)
    assert policy == '"per-minute";q=2;w=60' and re.fullmatch(r'"per-minute";r=0;t=\d+', left)
    assert alice.get(f"{FUNCTIONS}/{name}/invocations").json() == []  # nothing recorded
    assert alice.get(f"{FUNCTIONS}/{name}").json()["workers"] == []  # nor started
    for _ in range(4):  # the owner's own token: no limit, no RateLimit fields
        mine = alice.get(f"{FUNCTIONS}/{name}")
        assert mine.status_code == 200 and "ratelimit" not in mine.headers


def _detached(client: httpx.Client, name: str) -> str:
    """Start a detached invocation, read its first event and go away."""
    with invoked(client, name, {}, detach="true") as (key, events):
        assert next(events).event == "output"
    return key


def test_a_key_has_at_most_its_concurrent_invocations(alice: httpx.Client, keyed: Any) -> None:
    name = register(alice, FOREVER, max_concurrency=8)
    key = keyed(make_key(alice, name, concurrent=2, per_minute=100))  # the refusal says which
    first, _second = _detached(key, name), _detached(key, name)
    answer = key.post(f"{FUNCTIONS}/{name}/invoke", json={}, params={"detach": "true"})
    refused(answer, 429)
    assert answer.headers["retry-after"] == "5"
    assert _quota(answer) == (
        '"concurrent";q=2;qu="concurrent-requests"',
        '"concurrent";r=0',
    )
    assert len(alice.get(f"{FUNCTIONS}/{name}/invocations").json()) == 2  # no third row
    owners = _detached(alice, name)  # the owner's own token: not the key's limit
    cancelled = key.delete(f"{FUNCTIONS}/{name}/invocations/{first}")
    assert cancelled.json()["state"] == "cancelled"
    third = _detached(key, name)  # a slot freed
    for started in (_second, owners, third):
        assert alice.delete(f"{FUNCTIONS}/{name}/invocations/{started}").status_code == 200


def test_a_revoked_key_is_refused_at_once(alice: httpx.Client, keyed: Any) -> None:
    name = register(alice, ECHO)
    made = make_key(alice, name)
    key = keyed(made)
    assert key.get(f"{FUNCTIONS}/{name}").status_code == 200
    assert alice.delete(f"{TOKENS}/{made['id']}").status_code == 204
    refused(key.get(f"{FUNCTIONS}/{name}"), 401)
    refused(key.post(f"{FUNCTIONS}/{name}/invoke", json={}), 401)
