"""``/v1`` on the real Slurm cluster: llama.cpp's server on the tiny model as a Slurm job of
the service's account, reached by the official ``openai`` client through the gateway."""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.support.backends import ensure_backends, write_llama
from tests.support.gateway_process import GatewayProcess, new_gateway
from tests.support.services import admin_token, stop_services, toml_string, wait_replicas
from tests.support.slurm import CONFIG, SYSTEM
from tests.support.tiny_gguf import MODEL_NAME


def _config(script: Path) -> str:
    return f"""
service_interval = 0.3
service_wait_seconds = 120
{CONFIG}
[services.llama]
system = "{SYSTEM}"
script = {toml_string(script.read_text())}
models = ["{MODEL_NAME}"]
min_replicas = 1
max_replicas = 1
users = ["bob"]
run_as = "alice"
time_limit = 600
ready_timeout = 300
"""


@pytest.fixture(scope="module")
def gateway(
    slurm_cluster: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[GatewayProcess]:
    if os.geteuid() != 0:
        pytest.skip("the multi-user gateway runs as root")
    ensure_backends()
    models = Path(tempfile.mkdtemp(prefix="hpcgate-llama-"))  # alice's job reads it: not
    models.chmod(0o755)  # under pytest's 0700 temporary directory
    server = new_gateway(
        tmp_path_factory.mktemp("slurm-openai"), _config(write_llama(models).script)
    )
    server.start()
    try:
        with server.client(admin_token(server.home)) as admin:
            wait_replicas(
                admin, "llama", lambda found: any(r["state"] == "ready" for r in found), 300
            )
        yield server
        stop_services(server.url, admin_token(server.home), [])
    finally:
        server.stop()
        shutil.rmtree(models, ignore_errors=True)


MESSAGES: list[openai.types.chat.ChatCompletionMessageParam] = [
    {"role": "user", "content": "hello cat"}
]


def _client(gateway: GatewayProcess, token: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=token, max_retries=0)


def test_the_openai_client_reaches_a_model_served_by_a_slurm_job(gateway: GatewayProcess) -> None:
    token = gateway.token("bob")
    with _client(gateway, token) as bob, _client(gateway, gateway.token("carol")) as carol:
        assert [m.id for m in bob.models.list()] == [MODEL_NAME]
        whole = bob.chat.completions.create(
            model=MODEL_NAME, messages=MESSAGES, max_tokens=6, temperature=0
        )
        assert whole.usage is not None and whole.usage.completion_tokens == 6
        stream = bob.chat.completions.create(
            model=MODEL_NAME, messages=MESSAGES, max_tokens=6, temperature=0, stream=True
        )
        chunks = list(stream)
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert text == whole.choices[0].message.content and all(c.choices for c in chunks)
        with pytest.raises(openai.NotFoundError):  # the service is not shared with carol
            carol.completions.create(model=MODEL_NAME, prompt="x")
    row = _usage_of_two(gateway, {"Authorization": f"Bearer {token}"})
    assert (row["user"], row["service"], row["completion_tokens"]) == ("bob", "llama", 12)
    assert row["prompt_tokens"] == 2 * whole.usage.prompt_tokens


def _usage_of_two(gateway: GatewayProcess, auth: dict[str, str]) -> dict[str, Any]:
    """The caller's one usage row, once it counts both requests (it is stored behind)."""
    deadline = time.monotonic() + 10
    while True:
        rows = httpx.get(f"{gateway.url}/api/v1/usage", headers=auth).json()
        if len(rows) == 1 and rows[0]["requests"] == 2:
            found: dict[str, Any] = rows[0]
            return found
        assert time.monotonic() < deadline, rows
        time.sleep(0.1)
