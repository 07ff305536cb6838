"""One real gateway on the embedded scheduler, for the functions tier: workers run as
real jobs (the gateway's worker with the test's source, on the system's Python)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.functions import delete_all
from tests.support.gateway_process import GatewayProcess
from tests.support.services import services_gateway

CONFIG = """
service_interval = 0.2
service_wait_seconds = 30

[systems.local]
scheduler = "embedded"
status_interval = 0.2
slots = 16
"""


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    with services_gateway(tmp_path_factory.mktemp("gateway"), CONFIG) as server:
        try:
            yield server
        finally:  # before the services are stopped: a pool is deleted with its function
            for user in ("alice", "bob"):
                with server.client(server.token(user)) as client:
                    delete_all(client)
