"""Consent ([consent] token_scopes) through a real gateway process over real HTTP: a new
token asking for a marked scope is held (202) and refused until its user approves it with
another credential; decisions are the user's alone, idempotent, audited; the CLI and the
SDK see the same requests."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from hpcgate.client import Client
from hpcgate.model.consents import ConsentPending
from tests.support.gateway_process import TEST_CONFIG, GatewayProcess, running_gateway

TOKENS, CONSENTS, JOBS = "/api/v1/tokens", "/api/v1/consents", "/api/v1/systems/local/jobs"
CONFIG = (
    TEST_CONFIG
    + """
[consent]
token_scopes = ["files:write"]
pending_per_user = 3
"""
)


@pytest.fixture(scope="module")
def held_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    yield from running_gateway(tmp_path_factory.mktemp("consent"), CONFIG)


@pytest.fixture(scope="module")
def login(held_gateway: GatewayProcess) -> Iterator[httpx.Client]:
    """alice's own login token (made by the admin's command line)."""
    with held_gateway.client(held_gateway.token("alice")) as client:
        yield client


@pytest.fixture(scope="module")
def portal(held_gateway: GatewayProcess) -> Iterator[httpx.Client]:
    """Another token of alice's, the one a third-party portal holds."""
    with held_gateway.client(held_gateway.token("alice")) as client:
        yield client


def _ask(asker: httpx.Client, scopes: list[str]) -> dict[str, Any]:
    answer = asker.post(TOKENS, json={"scopes": scopes, "description": "for the portal"})
    assert answer.status_code == 202, answer.text
    assert answer.headers["content-type"] == "application/json"
    body: dict[str, Any] = answer.json()
    assert answer.headers["hpcgate-consent"] == body["consent"]["id"]
    assert answer.headers["location"] == f"{CONSENTS}/{body['consent']['id']}"
    return body


def _as(gateway: GatewayProcess, token: str) -> httpx.Client:
    return gateway.client(token)


def test_a_marked_scope_holds_the_new_token_until_another_credential_approves(
    held_gateway: GatewayProcess, login: httpx.Client, portal: httpx.Client
) -> None:
    body = _ask(portal, ["files:write", "jobs:read"])
    consent, token = body["consent"], body["token"]
    assert consent["state"] == "pending" and consent["kind"] == "token"
    assert consent["user"] == "alice" and consent["credential"] == token["id"]
    assert consent["scopes"] == ["files:write", "jobs:read"]
    assert consent["asked_by"]["user"] == "alice" and "files:write" in consent["what"]
    cid = consent["id"]
    with _as(held_gateway, token["token"]) as held:
        waiting = held.get(JOBS)  # a pending token is unusable: it only shows its request
        assert waiting.status_code == 202 and waiting.json()["consent"]["id"] == cid
        assert held.post(f"{CONSENTS}/{cid}/approve").status_code == 202  # nor self-approves
    refused = portal.post(f"{CONSENTS}/{cid}/approve")  # the asker cannot approve its own
    assert refused.status_code == 403, refused.text
    assert refused.headers["content-type"] == "application/problem+json"
    child = portal.post(TOKENS, json={"scopes": ["jobs:read"]})  # unmarked: made at once
    assert child.status_code == 201, child.text
    with _as(held_gateway, child.json()["token"]) as minted:  # nor a token the asker minted
        assert minted.post(f"{CONSENTS}/{cid}/approve").status_code == 403
    assert portal.get(f"{CONSENTS}/{cid}").json()["state"] == "pending"
    approved = login.post(f"{CONSENTS}/{cid}/approve")
    assert approved.status_code == 200, approved.text
    assert approved.json()["state"] == "approved" and approved.json()["decided_at"]
    again = login.post(f"{CONSENTS}/{cid}/approve")  # approve twice = once
    assert again.status_code == 200 and again.json() == approved.json()
    assert login.post(f"{CONSENTS}/{cid}/deny").status_code == 409
    with _as(held_gateway, token["token"]) as held:
        assert held.get(JOBS).status_code == 200


def test_a_denied_token_is_revoked_and_stays_denied(
    held_gateway: GatewayProcess, login: httpx.Client, portal: httpx.Client
) -> None:
    body = _ask(portal, ["files:write"])
    cid = body["consent"]["id"]
    denied = login.post(f"{CONSENTS}/{cid}/deny")
    assert denied.status_code == 200 and denied.json()["state"] == "denied"
    assert login.post(f"{CONSENTS}/{cid}/deny").json()["state"] == "denied"
    assert login.post(f"{CONSENTS}/{cid}/approve").status_code == 409
    with _as(held_gateway, body["token"]["token"]) as held:
        assert held.get(JOBS).status_code == 401
    revoked = [t for t in login.get(TOKENS).json() if t["id"] == body["token"]["id"]]
    assert revoked[0]["revoked_at"] is not None


def test_other_users_see_and_decide_none_of_them(
    held_gateway: GatewayProcess, login: httpx.Client, portal: httpx.Client
) -> None:
    cid = _ask(portal, ["files:write"])["consent"]["id"]
    with _as(held_gateway, held_gateway.token("bob")) as bob:
        assert bob.get(f"{CONSENTS}/{cid}").status_code == 404
        assert bob.post(f"{CONSENTS}/{cid}/approve").status_code == 404
        assert bob.post(f"{CONSENTS}/{cid}/deny").status_code == 404
        assert cid not in [c["id"] for c in bob.get(CONSENTS).json()]
    with _as(held_gateway, held_gateway.token("root", "admin")) as admin:  # an admin neither
        assert admin.post(f"{CONSENTS}/{cid}/approve").status_code == 404
    pending = login.get(CONSENTS, params={"state": "pending"}).json()
    assert cid in [c["id"] for c in pending]
    assert all(c["state"] == "pending" for c in pending)
    assert login.get(f"{CONSENTS}/{'0' * 16}").status_code == 404
    assert login.get(f"{CONSENTS}/not-an-id").status_code == 422
    assert login.get(CONSENTS, params={"limit": 10**6}).status_code == 422
    assert login.post(f"{CONSENTS}/{cid}/deny").status_code == 200


def test_every_decision_is_in_the_audit_log(
    held_gateway: GatewayProcess, login: httpx.Client, portal: httpx.Client
) -> None:
    cid = _ask(portal, ["files:write"])["consent"]["id"]
    refused = portal.post(f"{CONSENTS}/{cid}/approve")
    assert login.post(f"{CONSENTS}/{cid}/approve").status_code == 200
    with _as(held_gateway, held_gateway.token("auditor", "admin")) as admin:
        records = admin.get("/api/v1/audit", params={"user": "alice"}).json()["items"]
    decisions = [r for r in records if r["resource"].get("consent_id") == cid]
    assert [(r["route"], r["status"]) for r in decisions] == [
        ("/api/v1/consents/{consent_id}/approve", 200),
        ("/api/v1/consents/{consent_id}/approve", refused.status_code),
    ]
    assert decisions[0]["token_id"] != decisions[1]["token_id"]


def test_a_user_may_have_only_so_many_waiting(held_gateway: GatewayProcess) -> None:
    with _as(held_gateway, held_gateway.token("carol")) as carol:
        for _ in range(3):
            _ask(carol, ["files:write"])
        over = carol.post(TOKENS, json={"scopes": ["files:write"]})
        assert over.status_code == 403, over.text
        assert over.json()["type"].endswith("/limit-exceeded")
        live = [t for t in carol.get(TOKENS).json() if t["revoked_at"] is None]
    assert len(live) == 1 + 3  # the login and the three held: the refused one was revoked


def test_the_sdk_and_the_cli_list_and_decide(held_gateway: GatewayProcess, tmp_path: Path) -> None:
    own = held_gateway.token("dave")
    asker = Client(held_gateway.url, token=held_gateway.token("dave"))
    with asker, pytest.raises(ConsentPending) as held:
        asker.create_token(scopes=["files:write"])
    answer = held.value.answer
    assert answer.token is not None and answer.consent.state == "pending"
    clean = {k: v for k, v in os.environ.items() if not k.startswith("HPCGATE_")}
    env = clean | {"HPCGATE_URL": held_gateway.url, "HPCGATE_TOKEN": own}
    env["HPCGATE_CONFIG_DIR"] = str(tmp_path)

    def hpcgate(*args: str) -> subprocess.CompletedProcess[str]:
        argv = [sys.executable, "-m", "hpcgate", "consent", *args]
        return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60)

    listed = hpcgate("list")
    assert listed.returncode == 0 and answer.consent.id in listed.stdout, listed.stderr
    approved = hpcgate("approve", answer.consent.id)
    assert approved.returncode == 0, approved.stderr
    assert f"consent {answer.consent.id}: approved" in approved.stdout
    with Client(held_gateway.url, token=answer.token.token) as now_usable:
        assert now_usable.consent(answer.consent.id).state == "approved"
    assert hpcgate("deny", "0" * 16).returncode != 0
