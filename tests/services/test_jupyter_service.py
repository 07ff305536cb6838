"""A real JupyterLab as a real job on the embedded scheduler, reached through the proxy: it
serves under its public prefix (``keep_prefix``), the lab page loads, a kernel starts
through the proxied REST API and executes code over the proxied WebSocket."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest

from tests.support.accounts import passable
from tests.support.backends import BACKENDS, Backend, ensure_backends, write_jupyter
from tests.support.gateway_process import GatewayProcess, user_client
from tests.support.jupyter_service import (
    JUPYTER_START_SECONDS,
    PREFIX,
    assert_kernel_runs,
    jupyter_config,
)
from tests.support.services import (
    in_state,
    services_gateway,
    wait_replicas,
)


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> tuple[Backend, str]:
    if not (BACKENDS / "venv" / "bin" / "jupyter-lab").exists():
        ensure_backends()  # not when only the llama.cpp build is out of date: it takes minutes
    directory = tmp_path_factory.mktemp("jupyter")
    directory.chmod(0o711)  # the lab runs as alice, who reads its script and token file
    passable(directory)
    backend = write_jupyter(directory, base_url=PREFIX, owner="alice")
    config = f"""
service_interval = 0.3
service_wait_seconds = 30

[systems.local]
scheduler = "embedded"
status_interval = 0.3
slots = 4
{jupyter_config(backend, "local", 'run_as = "alice"')}"""
    return backend, config


@pytest.fixture(scope="module")
def gateway(
    lab: tuple[Backend, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[GatewayProcess]:
    with services_gateway(tmp_path_factory.mktemp("gateway"), lab[1]) as server:
        yield server


alice = user_client("alice")


@pytest.fixture(scope="module")
def token(lab: tuple[Backend, str], alice: httpx.Client) -> str:
    """Jupyter's own token, once the lab is ready."""
    wait_replicas(alice, "lab", in_state("ready"), timeout=JUPYTER_START_SECONDS)
    assert lab[0].token
    return lab[0].token


def test_the_lab_page_loads_through_the_proxy(
    gateway: GatewayProcess, alice: httpx.Client, token: str
) -> None:
    page = alice.get(f"{PREFIX}lab", params={"token": token})
    assert page.status_code == 200, page.text[:2000]
    assert page.headers["content-type"].startswith("text/html")
    data = page.text.split('id="jupyter-config-data" type="application/json">', 1)[1]
    config = json.loads(data.split("</script>", 1)[0])
    assert config["baseUrl"] == PREFIX
    with gateway.client(gateway.token("alice")) as fresh:  # no cookie of Jupyter's
        assert fresh.get(f"{PREFIX}api/status").status_code == 403  # its token still counts


def test_a_kernel_executes_code_over_the_proxied_websocket(
    gateway: GatewayProcess, alice: httpx.Client, token: str
) -> None:
    assert_kernel_runs(gateway, alice, token)
