"""Tokens hpcgate must refuse, each with a 401 problem+json that changes nothing: for
another audience, expired, not yet valid, tampered, unsigned (``alg: none``), signed with
the provider's public key as an HMAC secret, from an untrusted issuer, naming unknown keys.

The provider signs the hand-made ones with its own key (``/_test/sign``) where the point
is a claim, so that only that claim is wrong."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from joserfc.jwk import RSAKey

from tests.support.gateway_process import GatewayProcess
from tests.support.idp import CI_CLIENT, IdP

JOBS = "/api/v1/systems/local/jobs"
HELLO = {"script": "#!/bin/bash\necho hi"}


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _json(value: object) -> str:
    return _b64(json.dumps(value).encode())


def _decode(text: str) -> dict[str, object]:
    decoded: dict[str, object] = json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
    return decoded


def _parts(token: str) -> tuple[dict[str, object], dict[str, object], str]:
    header, payload, signature = token.split(".")
    return _decode(header), _decode(payload), signature


def _claims(idp: IdP, **changes: object) -> dict[str, object]:
    now = int(time.time())
    claims: dict[str, object] = {
        "iss": idp.issuer,
        "aud": "hpcgate",
        "sub": CI_CLIENT,
        "preferred_username": CI_CLIENT,
        "scope": "jobs:read jobs:write admin",
        "iat": now,
        "exp": now + 600,
    }
    return claims | changes


def _refused(gateway: GatewayProcess, token: str) -> str:
    """The token is refused with a 401 problem+json; its detail."""
    with gateway.client(token) as client:
        response = client.post(JOBS, json=HELLO)
    assert response.status_code == 401, response.text
    assert response.headers["content-type"] == "application/problem+json"
    return str(response.json()["detail"])


@pytest.fixture
def ci_jobs(idp: IdP, oidc_gateway: GatewayProcess) -> Iterator[httpx.Client]:
    """The CI client's own view of its jobs, to show that a refused token changed nothing."""
    with oidc_gateway.client(idp.client_credentials("jobs:read")) as client:
        yield client


def _count(client: httpx.Client) -> int:
    return len(client.get(JOBS, params={"limit": 100}).json()["items"])


def test_a_provider_signed_token_for_another_audience(
    idp: IdP, oidc_gateway: GatewayProcess, ci_jobs: httpx.Client
) -> None:
    before = _count(ci_jobs)
    token = idp.client_credentials("jobs:write", resource="urn:other")
    assert _parts(token)[1]["aud"] == "other"
    assert "aud" in _refused(oidc_gateway, token)
    assert _count(ci_jobs) == before


@dataclass(frozen=True)
class FromNow:
    """A time claim this many seconds from when the test runs."""

    seconds: int


@pytest.mark.parametrize(
    ("changes", "why"),
    [
        ({"exp": FromNow(-120), "iat": FromNow(-900)}, "expired"),
        ({"nbf": FromNow(600)}, "not yet valid"),
        ({"iat": FromNow(600)}, "future"),
        ({"iss": "http://127.0.0.1:1"}, "issuer is not trusted"),
        ({"exp": None}, "exp"),
        ({"preferred_username": "root\n"}, "not an hpcgate user name"),
    ],
    ids=[
        "expired",
        "not-yet-valid",
        "issued-in-the-future",
        "unknown-issuer",
        "no-exp",
        "bad-user",
    ],
)
def test_a_provider_signed_token_with_a_bad_claim(
    idp: IdP,
    oidc_gateway: GatewayProcess,
    ci_jobs: httpx.Client,
    changes: dict[str, object],
    why: str,
) -> None:
    before = _count(ci_jobs)
    now = int(time.time())  # when the test runs: collection may be long before
    timed = {k: now + v.seconds if isinstance(v, FromNow) else v for k, v in changes.items()}
    claims = {k: v for k, v in _claims(idp, **timed).items() if v is not None}
    assert why in _refused(oidc_gateway, idp.sign(claims))
    assert _count(ci_jobs) == before


def test_a_tampered_token(idp: IdP, oidc_gateway: GatewayProcess, ci_jobs: httpx.Client) -> None:
    before = _count(ci_jobs)
    header, payload, signature = idp.client_credentials("jobs:read").split(".")
    claims = _parts(f"{header}.{payload}.{signature}")[1] | {"scope": "jobs:write admin"}
    assert "signature" in _refused(oidc_gateway, f"{header}.{_json(claims)}.{signature}")
    assert _count(ci_jobs) == before


def test_an_unsigned_token(idp: IdP, oidc_gateway: GatewayProcess, ci_jobs: httpx.Client) -> None:
    before = _count(ci_jobs)
    header = _parts(idp.client_credentials("jobs:read"))[0] | {"alg": "none"}
    for signature in ("", "AAAA"):
        token = f"{_json(header)}.{_json(_claims(idp))}.{signature}"
        assert "algorithm 'none'" in _refused(oidc_gateway, token)
    assert _count(ci_jobs) == before


def test_the_public_key_as_an_hmac_secret(
    idp: IdP, oidc_gateway: GatewayProcess, ci_jobs: httpx.Client
) -> None:
    before = _count(ci_jobs)
    kid = _parts(idp.client_credentials("jobs:read"))[0]["kid"]
    jwks = httpx.get(f"{idp.issuer}/jwks").json()["keys"]
    public = RSAKey.import_key(next(k for k in jwks if k["kid"] == kid))
    for encoding in (serialization.Encoding.PEM, serialization.Encoding.DER):
        secret = public.public_key.public_bytes(
            encoding, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        signed = f"{_json({'alg': 'HS256', 'kid': kid})}.{_json(_claims(idp))}"
        mac = hmac.new(secret, signed.encode(), hashlib.sha256).digest()
        assert "algorithm 'HS256'" in _refused(oidc_gateway, f"{signed}.{_b64(mac)}")
    assert _count(ci_jobs) == before


def test_a_key_of_the_wrong_type_for_the_algorithm(
    idp: IdP, oidc_gateway: GatewayProcess, ci_jobs: httpx.Client
) -> None:
    """An RS256 signature under the header of the provider's ES256 key's id: refused."""
    before = _count(ci_jobs)
    es_kid = _parts(idp.sign(_claims(idp), alg="ES256"))[0]["kid"]
    header, payload, signature = idp.sign(_claims(idp)).split(".")
    forged = _json(_parts(f"{header}.{payload}.{signature}")[0] | {"kid": es_kid})
    assert "signing key" in _refused(oidc_gateway, f"{forged}.{payload}.{signature}")
    assert _count(ci_jobs) == before


def test_garbage_shaped_like_a_jwt(oidc_gateway: GatewayProcess) -> None:
    for token in (
        "aa.bb.cc",
        f"{_json([1])}.{_json({})}.x",
        f"{_json({})}.{_json({'iss': [1]})}.x",
    ):
        _refused(oidc_gateway, token)


def test_a_flood_of_unknown_key_ids_costs_the_provider_one_fetch_a_second(
    idp: IdP, oidc_gateway: GatewayProcess
) -> None:
    token = idp.client_credentials("jobs:read")
    _, payload, signature = token.split(".")
    with oidc_gateway.client(token) as client:
        assert client.get(JOBS).status_code == 200  # discovery and keys are fetched by now
    time.sleep(1.1)  # past the interval: the flood's first unknown id may refetch
    before, started = idp.jwks_fetches(), time.monotonic()
    for _ in range(40):
        forged = _json(_parts(token)[0] | {"kid": uuid.uuid4().hex})
        assert "signing key" in _refused(oidc_gateway, f"{forged}.{payload}.{signature}")
    elapsed = time.monotonic() - started
    fetched = idp.jwks_fetches() - before
    assert 1 <= fetched <= elapsed + 1, (fetched, elapsed)  # jwks_refetch_seconds = 1
