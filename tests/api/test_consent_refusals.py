"""A credential held for consent where a 202 would be misread, through a real gateway
process: the official ``openai`` client on ``/v1`` gets a 403 in OpenAI's error format
(``consent_pending``) naming where to approve, and a real WebSocket client's handshake is
refused 403 with a problem before any socket opens. Once approved, the same token works."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import openai
import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from tests.support.gateway_process import TEST_CONFIG, GatewayProcess, running_gateway

CONFIG = TEST_CONFIG + '\n[consent]\ntoken_scopes = ["files:write"]\nclients = ["portal"]\n'


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    yield from running_gateway(tmp_path_factory.mktemp("consent-refusals"), CONFIG)


@pytest.fixture
def held(gateway: GatewayProcess) -> tuple[str, str]:
    """A new token of alice's holding a marked scope: (its secret, its consent request)."""
    with gateway.client(gateway.token("alice")) as portal:
        answer = portal.post("/api/v1/tokens", json={"scopes": ["files:write", "jobs:read"]})
    assert answer.status_code == 202, answer.text
    return answer.json()["token"]["token"], answer.json()["consent"]["id"]


def _openai(gateway: GatewayProcess, token: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=token, max_retries=0)


def test_v1_refuses_a_held_token_in_openais_shape_until_it_is_approved(
    gateway: GatewayProcess, held: tuple[str, str]
) -> None:
    token, cid = held
    client = _openai(gateway, token)
    with pytest.raises(openai.PermissionDeniedError) as listing:
        client.models.list()
    with pytest.raises(openai.PermissionDeniedError) as chat:  # the forwarding layer's route
        client.chat.completions.create(model="any", messages=[{"role": "user", "content": "hi"}])
    for refused in (listing.value, chat.value):
        assert refused.status_code == 403 and refused.code == "consent_pending"
        assert refused.response.headers["hpcgate-consent"] == cid
        assert isinstance(refused.body, dict) and refused.body["type"] == "permission_error"
        assert f"/api/v1/consents/{cid}/approve" in refused.body["message"]
    with gateway.client(gateway.token("alice")) as login:
        assert login.post(f"/api/v1/consents/{cid}/approve").status_code == 200
    assert client.models.list().data == []  # approved: it acts (no service is declared)


def test_a_websocket_handshake_with_a_held_token_is_refused_403_before_opening(
    gateway: GatewayProcess, held: tuple[str, str]
) -> None:
    token, cid = held
    url = gateway.url.replace("http://", "ws://", 1) + "/api/v1/services/sock/proxy/chat"
    with pytest.raises(InvalidStatus) as refused:
        connect(url, additional_headers={"Authorization": f"Bearer {token}"}, open_timeout=30)
    response = refused.value.response
    assert response.status_code == 403
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["hpcgate-consent"] == cid
    problem = json.loads(response.body)
    assert problem["type"].endswith("/consent-pending") and problem["consent"] == cid
    assert problem["approve"] == f"/api/v1/consents/{cid}/approve"
    with gateway.client(token) as still_held:  # elsewhere the request is still answered 202
        assert still_held.get("/api/v1/systems").status_code == 202


def test_the_openapi_document_declares_the_202_outside_v1_only(gateway: GatewayProcess) -> None:
    paths = httpx.get(f"{gateway.url}/openapi.json", timeout=30).json()["paths"]
    assert "202" in paths["/api/v1/systems"]["get"]["responses"]
    assert "202" not in paths["/v1/models"]["get"]["responses"]
    assert "202" not in paths["/v1/chat/completions"]["post"]["responses"]
