"""One real gateway on the embedded scheduler that declares a service, for the tier."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.gateway_process import GatewayProcess, user_client
from tests.support.services import (
    backend_script,
    services_gateway,
    toml_string,
)

CONFIG = f"""
service_interval = 0.2
service_wait_seconds = 30
max_request_bytes = 1048576
max_script_bytes = 4096

[systems.local]
scheduler = "embedded"
status_interval = 0.2
slots = 16

[services.echo]
system = "local"
script = {toml_string(backend_script())}
min_replicas = 1
max_replicas = 2
users = ["alice"]
run_as = "services"  # no Unix account of that name: the test gateways' fallback account
ready_timeout = 30
"""


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    with services_gateway(tmp_path_factory.mktemp("gateway"), CONFIG) as server:
        yield server


alice = user_client("alice")
bob = user_client("bob")
