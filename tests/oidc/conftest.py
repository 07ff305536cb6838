"""The OIDC tier: a real OpenID provider (scripts/idp) and a gateway that trusts it.

Without node or the npm registry the tier is skipped; in CI (``CI`` set) it fails instead.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.gateway_process import TEST_CONFIG, GatewayProcess, new_gateway
from tests.support.idp import CLI_CLIENT, GATEWAY_CLIENT, GATEWAY_SECRET, IdP, install


@pytest.fixture(scope="session")
def idp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[IdP]:
    install()
    provider = IdP(tmp_path_factory.mktemp("idp"))
    try:
        provider.start()
        yield provider
    finally:
        provider.stop()


def oidc_config(issuer: str) -> str:
    return (
        TEST_CONFIG
        + f"""
[auth.oidc.test]
issuer = "{issuer}"
audience = "hpcgate"
allow_insecure_issuer = true
jwks_refetch_seconds = 1
introspection_client_id = "{GATEWAY_CLIENT}"
introspection_client_secret = "{GATEWAY_SECRET}"
cli_client_id = "{CLI_CLIENT}"
"""
    )


@pytest.fixture(scope="session")
def oidc_gateway(idp: IdP, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    server = new_gateway(tmp_path_factory.mktemp("gateway"), oidc_config(idp.issuer))
    try:
        server.start()
        yield server
    finally:
        server.stop()
