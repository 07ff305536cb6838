"""Fixtures of the SDK tier: one real gateway process (embedded scheduler, file roots) for
the whole session, and the SDK's clients for alice against it.

Roots are ``<base>/{user}`` and ``<base>/shared``; ``<base>/alice``, ``<base>/bob`` and
``<base>/shared`` exist from the start.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from hpcgate.client import AsyncClient, Client
from tests.support.accounts import give
from tests.support.gateway_process import GatewayProcess, new_gateway
from tests.support.services import admin_token, backend_script, services_gateway, toml_string

SDK_CONFIG = """
max_script_bytes = 4096

[systems.local]
scheduler = "embedded"
status_interval = 0.2
slots = 4
roots = ["{base}/{{user}}", "{base}/shared"]
"""


@pytest.fixture(scope="session")
def sdk_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The directory under which each user's file root lies."""
    base = tmp_path_factory.mktemp("sdk")
    for name in ("alice", "bob", "shared"):
        (base / name).mkdir()
    give(base / "alice", "alice")  # a root gateway acts as each user's own account
    give(base / "bob", "bob")
    (base / "shared").chmod(0o1777)
    return base


@pytest.fixture(scope="session")
def sdk_gateway(sdk_base: Path) -> Iterator[GatewayProcess]:
    gateway = new_gateway(sdk_base / "gateway-home", SDK_CONFIG.format(base=sdk_base))
    gateway.start()
    yield gateway
    gateway.stop()


@pytest.fixture(scope="session")
def alice_token(sdk_gateway: GatewayProcess) -> str:
    return sdk_gateway.token("alice")


@pytest.fixture(scope="session")
def admin(sdk_gateway: GatewayProcess) -> Iterator[Client]:
    """An admin's blocking client: ``admin.create_token(user=...)`` makes a token for any
    user in milliseconds (``sdk_gateway.token`` runs the command line: ~2 s)."""
    with Client(sdk_gateway.url, sdk_gateway.token("root", "admin")) as hpc:
        yield hpc


@pytest.fixture
def client(sdk_gateway: GatewayProcess, alice_token: str) -> Iterator[Client]:
    """The blocking SDK client, as alice."""
    with Client(sdk_gateway.url, alice_token) as hpc:
        yield hpc


@pytest.fixture
async def aclient(sdk_gateway: GatewayProcess, alice_token: str) -> AsyncIterator[AsyncClient]:
    """The asyncio SDK client, as alice."""
    async with AsyncClient(sdk_gateway.url, alice_token) as hpc:
        yield hpc


SERVICES_CONFIG = f"""
service_interval = 0.2
service_wait_seconds = 30
max_script_bytes = 4096

[systems.local]
scheduler = "embedded"
status_interval = 0.2
slots = 8

[services.echo]
system = "local"
script = {toml_string(backend_script())}
models = ["echo-model"]
min_replicas = 1
max_replicas = 1
users = ["alice"]
run_as = "services"  # no Unix account of that name: the test gateways' fallback account
ready_timeout = 30
"""


@pytest.fixture(scope="session")
def services_gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    """A gateway on the embedded scheduler that declares ``echo`` (the test backend, model
    ``echo-model``) for alice; every replica it started is stopped at the end."""
    with services_gateway(tmp_path_factory.mktemp("services-gateway"), SERVICES_CONFIG) as gw:
        yield gw


@pytest.fixture(scope="session")
def services_tokens(services_gw: GatewayProcess) -> dict[str, str]:
    """Tokens of alice and bob on :func:`services_gw`, and the admin's (``root``)."""
    found = {user: services_gw.token(user) for user in ("alice", "bob")}
    return {**found, "root": admin_token(services_gw.home)}
