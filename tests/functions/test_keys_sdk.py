"""API keys from the SDK (sync and async) and the command line, against the functions
tier's real gateway: made for a function, used by a client holding only the key, listed
and revoked."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from hpcgate.client import AsyncClient, Client
from hpcgate.model.errors import Forbidden, NotFound, Unauthenticated
from hpcgate.model.tokens import KeyLimits
from tests.support.gateway_process import GatewayProcess
from tests.support.services import SYSTEM_PYTHON

ECHO = "def f(x=1):\n    return {'x': x}\n"


def registered(hpc: Client) -> str:
    name = f"k{uuid.uuid4().hex[:8]}"
    hpc.functions.register(
        name=name, system="local", source=ECHO, callable="f", python=SYSTEM_PYTHON
    )
    return name


def test_the_sdk_makes_a_key_that_invokes_and_is_listed_and_revoked(
    gateway: GatewayProcess,
) -> None:
    with Client(gateway.url, gateway.token("alice")) as hpc:
        name, other = registered(hpc), registered(hpc)
        made = hpc.functions.create_key(name, per_minute=30, concurrent=2, description="app")
        assert made.functions == [name]
        assert made.limits == KeyLimits(per_minute=30, concurrent=2)
        with Client(gateway.url, made.token) as app:
            assert app.functions.call(name, {"x": 2}) == {"x": 2}
            with pytest.raises(NotFound):
                app.functions.call(other, {})
            with pytest.raises(Forbidden):
                app.create_token()
        assert [key.id for key in hpc.functions.keys(name)] == [made.id]
        assert hpc.functions.keys(other) == []
        hpc.functions.revoke_key(made.id)
        with Client(gateway.url, made.token) as app, pytest.raises(Unauthenticated):
            app.functions.get(name)


async def test_the_async_sdk_makes_a_key(gateway: GatewayProcess) -> None:
    with Client(gateway.url, gateway.token("alice")) as hpc:
        name = registered(hpc)
    async with AsyncClient(gateway.url, gateway.token("alice")) as hpc_async:
        made = await hpc_async.functions.create_key([name], concurrent=1)
        async with AsyncClient(gateway.url, made.token) as app:
            assert await app.functions.call(name, {"x": 3}) == {"x": 3}
        assert [key.id for key in await hpc_async.functions.keys(name)] == [made.id]
        await hpc_async.functions.revoke_key(made.id)


def run_cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "hpcgate", *args]
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120)


def test_the_command_line_creates_lists_and_revokes_keys(
    gateway: GatewayProcess, tmp_path: Path
) -> None:
    token = gateway.token("alice")
    env = {k: v for k, v in os.environ.items() if not k.startswith("HPCGATE_")}
    env |= {"HPCGATE_URL": gateway.url, "HPCGATE_TOKEN": token}
    env["HPCGATE_CONFIG_DIR"] = str(tmp_path / "config")
    with Client(gateway.url, token) as hpc:
        name = registered(hpc)
    made = run_cli(env, "functions", "key", "create", name, "--rpm", "60", "--concurrent", "4")
    assert made.returncode == 0, made.stderr
    secret = made.stdout.strip()
    assert secret.startswith("hpcg_") and "shown only now" in made.stderr
    listed = run_cli(env, "functions", "key", "ls", name, "--json")
    assert listed.returncode == 0, listed.stderr
    [key] = json.loads(listed.stdout)
    assert key["limits"] == {"per_minute": 60, "concurrent": 4} and "token" not in key
    table = run_cli(env, "functions", "key", "ls")
    assert key["id"] in table.stdout and name in table.stdout
    with Client(gateway.url, secret) as app:
        assert app.functions.call(name, {}) == {"x": 1}
    refused = run_cli(env, "functions", "key", "create", name, "--rpm", "0")
    assert refused.returncode == 2, refused.stderr
    revoked = run_cli(env, "functions", "key", "revoke", key["id"])
    assert revoked.returncode == 0, revoked.stderr
    with Client(gateway.url, secret) as app, pytest.raises(Unauthenticated):
        app.functions.get(name)
