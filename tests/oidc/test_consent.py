"""Consent through the real provider: each token the provider issues to a client marked in
``[consent] clients`` (a portal acting for alice, mapped to her by a rule) is held from its
first request until alice approves it with her own token from the provider's device flow."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.oidc.conftest import oidc_config
from tests.support.gateway_process import GatewayProcess, running_gateway
from tests.support.idp import CI_CLIENT, IdP

JOBS, CONSENTS = "/api/v1/systems/local/jobs", "/api/v1/consents"
HELLO = {"script": "#!/bin/bash\necho hi"}
# The portal's client-credentials tokens are alice's (a rule on client_id), not a service
# account: no token holds the marking claim.
MAPPED = f"""
service_account_claim = "hpcgate_service_account"

[[auth.oidc.test.users]]
claim = "client_id"
equals = "{CI_CLIENT}"
user = "alice"

[[auth.oidc.test.users]]
claim = "preferred_username"
match = "([a-z]+)"

[consent]
clients = ["{CI_CLIENT}"]
"""


@pytest.fixture(scope="module")
def gateway(idp: IdP, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    config = oidc_config(idp.issuer) + MAPPED  # [auth.oidc.test] is its last table
    yield from running_gateway(tmp_path_factory.mktemp("consent-oidc"), config)


def _held(client: httpx.Client, method: str, path: str, **body: object) -> dict[str, object]:
    answer = client.request(method, path, **body)  # type: ignore[arg-type]
    assert answer.status_code == 202, answer.text
    consent: dict[str, object] = answer.json()["consent"]
    return consent


def test_a_marked_client_s_token_waits_for_the_mapped_user(
    idp: IdP, gateway: GatewayProcess
) -> None:
    portal = gateway.client(idp.client_credentials("jobs:read jobs:write"))
    alice = gateway.client(idp.device_flow("alice", "openid jobs:read jobs:write"))
    with portal, alice:
        consent = _held(portal, "POST", JOBS, json=HELLO)  # nothing is submitted
        assert consent["user"] == "alice" and consent["kind"] == "client"
        assert consent["client"] == CI_CLIENT
        assert consent["asked_by"] == {
            "user": "alice",
            "token_id": consent["credential"],
            "client": CI_CLIENT,
        }
        assert _held(portal, "GET", JOBS)["id"] == consent["id"]  # the same request
        assert _held(portal, "POST", f"{CONSENTS}/{consent['id']}/approve")["id"] == consent["id"]
        assert alice.get(JOBS).json()["items"] == []
        waiting = alice.get(CONSENTS, params={"state": "pending"}).json()
        assert [c["id"] for c in waiting] == [consent["id"]]
        approved = alice.post(f"{CONSENTS}/{consent['id']}/approve")
        assert approved.status_code == 200, approved.text
        assert approved.json()["state"] == "approved"
        submitted = portal.post(JOBS, json=HELLO)
        assert submitted.status_code == 201, submitted.text
        assert [j["id"] for j in alice.get(JOBS).json()["items"]] == [submitted.json()["id"]]


def test_each_new_token_of_the_client_asks_again_and_none_decides_for_another(
    idp: IdP, gateway: GatewayProcess
) -> None:
    first = gateway.client(idp.client_credentials("jobs:read"))
    second = gateway.client(idp.client_credentials("jobs:read"))
    alice = gateway.client(idp.device_flow("alice", "openid jobs:read"))
    with first, second, alice:
        one = _held(first, "GET", JOBS)
        assert alice.post(f"{CONSENTS}/{one['id']}/approve").status_code == 200
        other = _held(second, "GET", JOBS)
        assert other["id"] != one["id"]
        refused = first.post(f"{CONSENTS}/{other['id']}/approve")  # approved, still the client
        assert refused.status_code == 403, refused.text
        assert alice.post(f"{CONSENTS}/{other['id']}/deny").json()["state"] == "denied"
        assert second.get(JOBS).status_code == 403
        assert first.get(JOBS).status_code == 200


def test_the_document_says_any_route_may_hold_a_request(gateway: GatewayProcess) -> None:
    document = httpx.get(f"{gateway.url}/openapi.json").json()
    listing = document["paths"][JOBS.replace("local", "{system}")]["get"]["responses"]
    assert listing["202"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/ConsentAnswer"
    }
    assert "202" not in document["paths"]["/api/v1/health"]["get"]["responses"]
