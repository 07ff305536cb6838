"""Tokens from a real OpenID provider's own flows call the API; hpcgate's tokens still do."""

from __future__ import annotations

import httpx

from tests.support.gateway_process import GatewayProcess
from tests.support.idp import IdP

JOBS = "/api/v1/systems/local/jobs"
HELLO = {"script": "#!/bin/bash\necho hi"}


def _call(gateway: GatewayProcess, token: str) -> httpx.Client:
    return gateway.client(token)


def test_a_client_credentials_token_submits_and_lists_jobs(
    idp: IdP, oidc_gateway: GatewayProcess
) -> None:
    token = idp.client_credentials("jobs:read jobs:write")
    with _call(oidc_gateway, token) as client:
        submitted = client.post(JOBS, json=HELLO)
        assert submitted.status_code == 201, submitted.text
        listed = client.get(JOBS).json()
    assert submitted.json()["id"] in [job["id"] for job in listed["items"]]


def test_the_scopes_of_the_token_bound_what_it_may_do(
    idp: IdP, oidc_gateway: GatewayProcess
) -> None:
    with _call(oidc_gateway, idp.client_credentials("jobs:read")) as client:
        assert client.get(JOBS).status_code == 200
        refused = client.post(JOBS, json=HELLO)
    assert refused.status_code == 403, refused.text
    assert refused.headers["content-type"] == "application/problem+json"


def test_the_device_flow_gives_the_user_who_approved_it(
    idp: IdP, oidc_gateway: GatewayProcess
) -> None:
    token = idp.device_flow("alice", "openid jobs:read jobs:write")
    with _call(oidc_gateway, token) as client:
        job = client.post(JOBS, json=HELLO)
        assert job.status_code == 201, job.text
    # alice's own hpcgate token sees the job: the provider's user is the same hpcgate user
    with oidc_gateway.client(oidc_gateway.token("alice")) as alice:
        assert job.json()["id"] in [j["id"] for j in alice.get(JOBS).json()["items"]]


def test_an_opaque_token_is_introspected(idp: IdP, oidc_gateway: GatewayProcess) -> None:
    token = idp.client_credentials("jobs:read", resource="urn:hpcgate:opaque")
    assert token.count(".") == 0  # opaque: only the provider knows what it means
    with _call(oidc_gateway, token) as client:
        response = client.get(JOBS)
    assert response.status_code == 200, response.text


def test_hpcgate_tokens_keep_working_beside_the_provider(oidc_gateway: GatewayProcess) -> None:
    with oidc_gateway.client(oidc_gateway.token("bob")) as bob:
        assert bob.get(JOBS).status_code == 200


def test_the_document_declares_the_provider_beside_the_bearer_token(
    idp: IdP, oidc_gateway: GatewayProcess
) -> None:
    document = httpx.get(f"{oidc_gateway.url}/openapi.json").json()
    schemes = document["components"]["securitySchemes"]
    assert schemes["HTTPBearer"]["scheme"] == "bearer"
    assert schemes["oidc-test"] == {
        "type": "openIdConnect",
        "openIdConnectUrl": f"{idp.issuer}/.well-known/openid-configuration",
        "description": schemes["oidc-test"]["description"],
    }
    listing = document["paths"]["/api/v1/systems/{system}/jobs"]["get"]
    assert listing["security"] == [{"HTTPBearer": []}, {"oidc-test": []}]


def test_the_forwarded_routes_take_a_provider_token_too(
    idp: IdP, oidc_gateway: GatewayProcess
) -> None:
    """/v1 is served in front of the router (api/forwarding.py), with its own token check."""
    no_model: dict[str, list[object]] = {"messages": []}
    with _call(oidc_gateway, idp.client_credentials("jobs:read")) as client:
        answer = client.post("/v1/chat/completions", json=no_model)
    assert answer.status_code == 400, answer.text  # past authentication, to the body
    assert answer.json()["error"]["param"] == "model"
    with _call(oidc_gateway, idp.sign({"iss": "http://127.0.0.1:1"})) as client:
        assert client.post("/v1/chat/completions", json=no_model).status_code == 401


def test_an_authorization_code_with_pkce_gives_the_user_who_signed_in(
    idp: IdP, oidc_gateway: GatewayProcess
) -> None:
    token = idp.authorization_code("carol", "openid jobs:read")
    with _call(oidc_gateway, token) as client:
        assert client.get(JOBS).status_code == 200
        assert client.post(JOBS, json=HELLO).status_code == 403  # jobs:read only
