"""``GET /api/v1/health`` on the shared real gateway: a stranger (no token, a wrong one, one
refused elsewhere) learns only that it answers; a user also the version; an admin which
gateway this is and which leads. The route never refuses: a probe keeps working."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from hpcgate import __version__
from tests.support.gateway_process import GatewayProcess

HEALTH = "/api/v1/health"
ALIVE = {"status": "ok"}


def _health(gateway: GatewayProcess, **headers: str) -> dict[str, Any]:
    answer = httpx.get(f"{gateway.url}{HEALTH}", headers=headers, timeout=10)
    assert answer.status_code == 200, answer.text
    assert "ratelimit" not in answer.headers  # counted against no limit
    found: dict[str, Any] = answer.json()
    return found


def test_a_stranger_learns_only_that_it_answers(gateway: GatewayProcess) -> None:
    found = _health(gateway)
    assert found == ALIVE
    assert not {"version", "gateway", "leads", "leader"} & set(found)


@pytest.mark.parametrize(
    "authorization",
    [
        "Bearer not-a-token",
        "Bearer hpcgate_" + "x" * 40,
        "Bearer " + "a" * 5000,
        "Bearer  x y",
        "Basic YWxpY2U6c2VjcmV0",
        "bearer",
    ],
)
def test_a_wrong_credential_is_no_credential_never_a_401(
    gateway: GatewayProcess, authorization: str
) -> None:
    assert _health(gateway, authorization=authorization) == ALIVE


def test_a_user_sees_the_version(gateway: GatewayProcess) -> None:
    found = _health(gateway, authorization=f"Bearer {gateway.token('alice')}")
    assert found == {"status": "ok", "version": __version__}


def test_an_admin_sees_which_gateway_this_is_and_which_leads(gateway: GatewayProcess) -> None:
    admin = (gateway.home / "admin-token").read_text().strip()
    found = _health(gateway, authorization=f"Bearer {admin}")
    assert set(found) == {"status", "version", "gateway", "leads", "leader"}
    assert found["status"] == "ok" and found["version"] == __version__
    host, _, pid = found["gateway"].rpartition(":")
    assert host and pid.isdigit()
    assert found["leads"] is True and found["leader"] == found["gateway"]  # SQLite: it leads


def test_tokens_refused_elsewhere_are_no_tokens_here(
    gateway: GatewayProcess, alice: httpx.Client
) -> None:
    """A token limited to a system (this route is not the system's) and a revoked one."""
    made = alice.post("/api/v1/tokens", json={"system": "local"})
    assert made.status_code == 201, made.text
    limited = made.json()
    assert _health(gateway, authorization=f"Bearer {limited['token']}") == ALIVE
    revoked = alice.post("/api/v1/tokens", json={})
    assert revoked.status_code == 201, revoked.text
    token = revoked.json()["token"]
    assert _health(gateway, authorization=f"Bearer {token}")["version"] == __version__
    assert alice.delete(f"/api/v1/tokens/{revoked.json()['id']}").status_code == 204
    assert _health(gateway, authorization=f"Bearer {token}") == ALIVE


def test_the_document_says_a_token_is_optional_and_what_it_adds(
    gateway: GatewayProcess,
) -> None:
    document = httpx.get(f"{gateway.url}/openapi.json", timeout=10).json()
    operation = document["paths"][HEALTH]["get"]
    assert operation["security"] == [{}, {"HTTPBearer": []}]
    assert set(operation["responses"]) == {"200"}  # no 401, 403, 429 or 202
    schema = document["components"]["schemas"]["Health"]
    assert schema["required"] == ["status"]
    assert "admin" in schema["properties"]["leader"]["description"]
    landing = httpx.get(f"{gateway.url}/", timeout=10)
    assert landing.status_code == 200 and f'href="{HEALTH}"' in landing.text
