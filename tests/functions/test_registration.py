"""Registering functions: what is refused (and nothing made), what is shown to whom, and
the pool a function gets (a service of its owner's that ordinary service routes cannot
name)."""

from __future__ import annotations

import httpx

from tests.support.functions import FUNCTIONS, register
from tests.support.gateway_process import user_client
from tests.support.services import SERVICES, SYSTEM_PYTHON

alice = user_client("alice")
bob = user_client("bob")
carol = user_client("carol")

SOURCE = "def f():\n    return 1\n"


def _body(**fields: object) -> dict[str, object]:
    return {"name": "g", "system": "local", "source": SOURCE, "python": SYSTEM_PYTHON, **fields}


def _refused(client: httpx.Client, status: int, **fields: object) -> dict[str, object]:
    answer = client.post(FUNCTIONS, json=_body(**fields))
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    found: dict[str, object] = answer.json()
    return found


def test_source_that_does_not_compile_is_a_422_naming_the_line(alice: httpx.Client) -> None:
    problem = _refused(alice, 422, name="bad", source="x = 1\ndef f(:\n    pass\n")
    assert problem["line"] == 2 and "line 2" in str(problem["detail"])
    assert alice.get(f"{FUNCTIONS}/bad").status_code == 404


def test_what_cannot_be_registered_is_refused_and_nothing_is_made(alice: httpx.Client) -> None:
    before = len(alice.get(SERVICES).json())
    _refused(alice, 422, name="s1", input_schema={"type": 12})
    _refused(alice, 422, name="s2", entry="os:path")  # both source and entry
    _refused(alice, 422, name="s3", python="python3; rm -rf ~")
    _refused(alice, 422, name="s4", max_concurrency=1001)
    _refused(alice, 422, name="s5", min_workers=2, max_workers=1)
    _refused(alice, 422, name="s6", max_workers=True)
    _refused(alice, 422, name="S-upper")
    _refused(alice, 404, name="s7", system="nowhere")
    _refused(alice, 422, name="s8", input_schema={"x": "y" * (65 << 10)})
    assert len(alice.get(SERVICES).json()) == before
    assert [f["name"] for f in alice.get(FUNCTIONS).json() if f["name"].startswith("s")] == []


def test_a_name_is_registered_once(alice: httpx.Client) -> None:
    name = register(alice, SOURCE, callable="f")
    assert alice.post(FUNCTIONS, json=_body(name=name)).status_code == 409


def test_the_pool_is_a_service_of_the_owner_that_service_routes_cannot_name(
    alice: httpx.Client,
) -> None:
    name = register(alice, SOURCE, min_workers=0)
    [pool] = [s for s in alice.get(SERVICES).json() if s["name"].startswith(f"fn.{name}.")]
    assert pool["owner"] == "alice" and pool["spec"]["health_path"] == "/health"
    assert alice.delete(f"{SERVICES}/{pool['name']}").status_code == 422
    assert alice.get(f"{FUNCTIONS}/{name}").json()["source"] == SOURCE
    assert alice.delete(f"{FUNCTIONS}/{name}").status_code == 204
    assert alice.get(f"{FUNCTIONS}/{name}").status_code == 404
    pools = [s for s in alice.get(SERVICES).json() if s["name"] == pool["name"]]
    assert pools == [] or pools[0]["stopping"]


def test_a_shared_function_shows_no_source_nor_who_it_is_shared_with(
    alice: httpx.Client, bob: httpx.Client
) -> None:
    name = register(alice, SOURCE, users=["bob", "carol"])
    shown = bob.get(f"{FUNCTIONS}/{name}").json()
    assert shown["owner"] == "alice" and shown["source"] is None
    assert shown["settings"]["users"] == []
    assert alice.get(f"{FUNCTIONS}/{name}").json()["settings"]["users"] == ["bob", "carol"]


def test_a_name_several_users_share_is_never_guessed(
    alice: httpx.Client, bob: httpx.Client, carol: httpx.Client
) -> None:
    name = register(alice, SOURCE, users=["carol"])
    assert carol.get(f"{FUNCTIONS}/{name}").json()["owner"] == "alice"
    register(bob, SOURCE, name=name, users=["*"])  # the same name, shared with everyone
    answer = carol.get(f"{FUNCTIONS}/{name}")
    assert answer.status_code == 409
    assert "alice, bob" in answer.json()["detail"]
    assert carol.get(f"{FUNCTIONS}/alice:{name}").json()["owner"] == "alice"
    assert carol.get(f"{FUNCTIONS}/bob:{name}").json()["owner"] == "bob"
    assert alice.get(f"{FUNCTIONS}/{name}").json()["owner"] == "alice"  # one's own first
    assert bob.get(f"{FUNCTIONS}/alice:{name}").status_code == 404  # not shared with bob
    assert bob.delete(f"{FUNCTIONS}/{name}").status_code == 204
