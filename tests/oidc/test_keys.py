"""The provider's keys: a rotation is picked up without a restart, a retired key stops
working once the keys are read again, and an outage of the JWKS endpoint does not stop
the keys already known. A provider and a gateway of their own: these restart the provider."""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Iterator

import pytest

from tests.oidc.conftest import oidc_config
from tests.support.gateway_process import GatewayProcess, new_gateway
from tests.support.idp import IdP, install

JOBS = "/api/v1/systems/local/jobs"
INTERVAL = 1.1  # just past the gateway's jwks_refetch_seconds


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[IdP, GatewayProcess]]:
    install()
    idp = IdP(tmp_path_factory.mktemp("idp-keys"))
    idp.start()
    gateway = new_gateway(tmp_path_factory.mktemp("gateway-keys"), oidc_config(idp.issuer))
    try:
        gateway.start()
        yield idp, gateway
    finally:
        gateway.stop()
        idp.stop()


def _kid(token: str) -> str:
    header = token.split(".")[0]
    return str(json.loads(base64.urlsafe_b64decode(header + "=" * (-len(header) % 4)))["kid"])


def _status(gateway: GatewayProcess, token: str) -> int:
    with gateway.client(token) as client:
        return client.get(JOBS).status_code


def _unknown_kid(token: str) -> str:
    _, payload, signature = token.split(".")
    forged = {"alg": "RS256", "typ": "at+jwt", "kid": uuid.uuid4().hex}
    encoded = base64.urlsafe_b64encode(json.dumps(forged).encode()).rstrip(b"=").decode()
    return f"{encoded}.{payload}.{signature}"


def test_a_rotation_is_picked_up_and_a_retired_key_dropped(
    pair: tuple[IdP, GatewayProcess],
) -> None:
    idp, gateway = pair
    used, kept, kept_longer = (idp.client_credentials("jobs:read") for _ in range(3))
    assert _status(gateway, used) == 200

    idp.restart(rotate=True)  # a new key signs; the old one is still published
    time.sleep(INTERVAL)
    rotated = idp.client_credentials("jobs:read")
    assert _kid(rotated) != _kid(used)
    assert _status(gateway, rotated) == 200  # its unknown kid made the gateway refetch
    assert _status(gateway, kept) == 200  # the old key is still in the set it read

    idp.restart(retire=True)  # the old key is no longer published
    time.sleep(INTERVAL)
    assert _status(gateway, _unknown_kid(rotated)) == 401  # makes the gateway read the set
    assert _status(gateway, kept_longer) == 401  # signed with the retired key
    assert _status(gateway, idp.client_credentials("jobs:read")) == 200


def test_a_jwks_outage_keeps_the_known_keys_working(pair: tuple[IdP, GatewayProcess]) -> None:
    idp, gateway = pair
    assert _status(gateway, idp.client_credentials("jobs:read")) == 200
    idp.jwks_down(True)
    try:
        time.sleep(INTERVAL)
        before = idp.jwks_fetches()
        assert _status(gateway, _unknown_kid(idp.client_credentials("jobs:read"))) == 401
        assert idp.jwks_fetches() == before + 1  # it tried, and the endpoint failed
        assert _status(gateway, idp.client_credentials("jobs:read")) == 200  # a fresh token
    finally:
        idp.jwks_down(False)


def test_a_stopped_provider_keeps_the_known_keys_working(
    pair: tuple[IdP, GatewayProcess],
) -> None:
    """The whole provider down (discovery and keys unreachable): tokens signed with a key
    the gateway has read keep working, those it never saw before too."""
    idp, gateway = pair
    seen, unseen, later = (idp.client_credentials("jobs:read") for _ in range(3))
    assert _status(gateway, seen) == 200
    idp.stop()
    try:
        assert _status(gateway, seen) == 200
        assert _status(gateway, unseen) == 200  # verified here, with the key already read
        time.sleep(INTERVAL)
        assert _status(gateway, _unknown_kid(unseen)) == 401  # a refetch, which fails
        assert _status(gateway, later) == 200  # and the known keys were kept
    finally:
        idp.start()
