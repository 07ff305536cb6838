"""``hpcgate login --oidc`` end to end: the real command line runs the device flow against the
real provider the gateway names, the test approves the code in the provider's own pages as
a user would, and later commands renew the access token with the refresh token: before it
expires, and once on a 401."""

from __future__ import annotations

import asyncio
import json
import os
import stat
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest

from hpcgate.client import AsyncClient
from hpcgate.client import _oidc as oidc_flow
from hpcgate.client import _profile as profiles
from tests.support.gateway_process import GatewayProcess
from tests.support.idp import CLI_CLIENT, IdP, approve

CODE_LINE = "To log in, open "
REFUSED = "eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOiJ4In0.c2ln"  # a JWT of an issuer no one trusts


def _env(config: Path) -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("HPCGATE_")}
    return clean | {"HPCGATE_CONFIG_DIR": str(config), "PYTHONUNBUFFERED": "1"}


def _hpcgate(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "hpcgate", *args]
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60)


def _login(env: dict[str, str], url: str, user: str) -> subprocess.CompletedProcess[str]:
    """Runs the login and, as the user, approves the code it shows."""
    argv = [sys.executable, "-m", "hpcgate", "login", url, "--oidc"]
    with subprocess.Popen(
        argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as cli:
        assert cli.stdout is not None
        shown = cli.stdout.readline()
        assert shown.startswith(CODE_LINE), shown + (cli.stderr.read() if cli.stderr else "")
        where, code = shown[len(CODE_LINE) :].split(" and enter the code ")
        approve(where, code.strip(), user)
        out, err = cli.communicate(timeout=60)
    return subprocess.CompletedProcess(argv, cli.returncode, shown + out, err)


def _saved(config: Path) -> dict[str, Any]:
    profile: dict[str, Any] = json.loads((config / "profiles.json").read_text())["profiles"][
        "default"
    ]
    return profile


def _save(config: Path, profile: dict[str, Any]) -> None:
    path = config / "profiles.json"
    data = json.loads(path.read_text())
    data["profiles"]["default"] = profile
    path.write_text(json.dumps(data))


def test_the_gateway_names_the_provider_and_client_to_log_in_with(
    idp: IdP, oidc_gateway: GatewayProcess
) -> None:
    listed = httpx.get(f"{oidc_gateway.url}/api/v1/auth/providers").json()  # no token
    assert [(p["name"], p["issuer"], p["client_id"]) for p in listed] == [
        ("test", idp.issuer, CLI_CLIENT)
    ]
    assert "offline_access" in listed[0]["scope"].split()


def test_login_through_the_provider_then_refresh_before_expiry_and_on_a_401(
    idp: IdP, oidc_gateway: GatewayProcess, tmp_path: Path
) -> None:
    config = tmp_path / "config"
    env = _env(config)
    logged_in = _login(env, oidc_gateway.url, "alice")
    assert logged_in.returncode == 0, logged_in.stderr
    assert "logged in to" in logged_in.stdout
    assert stat.S_IMODE((config / "profiles.json").stat().st_mode) == 0o600
    first = _saved(config)
    assert first["oidc"]["refresh_token"] and first["oidc"]["client_id"] == CLI_CLIENT
    assert first["oidc"]["expires_at"] > time.time() + 60

    listed = _hpcgate(env, "jobs", "ls", "--json")
    assert listed.returncode == 0, listed.stderr
    assert _saved(config)["token"] == first["token"]  # not due: no refresh

    # expiry: the profile says the token is past its time; the next command renews it first
    _save(config, first | {"oidc": first["oidc"] | {"expires_at": time.time() - 1}})
    assert _hpcgate(env, "systems", "--json").returncode == 0
    renewed = _saved(config)
    assert renewed["token"] != first["token"]  # a new access token, from the provider
    assert renewed["oidc"]["refresh_token"] != first["oidc"]["refresh_token"]  # rotated
    assert renewed["oidc"]["expires_at"] > time.time() + 60

    # a token the gateway refuses (401) is renewed once and the request sent again
    _save(config, renewed | {"token": REFUSED})
    again = _hpcgate(env, "systems", "--json")
    assert again.returncode == 0, again.stderr
    assert _saved(config)["token"] not in (renewed["token"], REFUSED)


def test_a_spent_refresh_token_fails_with_a_clear_message(
    oidc_gateway: GatewayProcess, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "config"
    token, login = _sdk_login(oidc_gateway, "bob", config, monkeypatch)
    spent = replace(login, expires_at=0.0, refresh_token="not-a-refresh-token")
    profiles.save("default", oidc_gateway.url, token, spent)
    failed = _hpcgate(_env(config), "systems", "--json")
    assert failed.returncode != 0
    assert "log in again" in failed.stderr


@pytest.mark.parametrize("args", [["--oidc", "--token", "x"]])
def test_oidc_and_a_token_exclude_each_other(
    oidc_gateway: GatewayProcess, tmp_path: Path, args: list[str]
) -> None:
    refused = _hpcgate(_env(tmp_path / "config"), "login", oidc_gateway.url, *args)
    assert refused.returncode != 0 and "--token" in refused.stderr


def test_the_async_client_renews_a_profile_s_token_too(
    oidc_gateway: GatewayProcess, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    token, login = _sdk_login(oidc_gateway, "carol", tmp_path / "config", monkeypatch)
    profiles.save("default", oidc_gateway.url, token, replace(login, expires_at=0.0))

    async def systems() -> list[str]:
        async with AsyncClient() as client:
            return [system.name for system in await client.systems()]

    assert asyncio.run(systems()) == ["local"]  # the token was past its time: renewed first
    renewed = profiles.load()
    assert renewed.token != token and renewed.oidc is not None
    assert renewed.oidc.expires_at > time.time() + 60


def _sdk_login(
    gateway: GatewayProcess, user: str, config: Path, monkeypatch: pytest.MonkeyPatch
) -> tuple[str, profiles.OidcLogin]:
    """The SDK's own device login with this process's profiles in ``config``: the user
    approves the code at once, so the first poll gets the token (no pause)."""
    monkeypatch.setenv("HPCGATE_CONFIG_DIR", str(config))
    for name in ("HPCGATE_URL", "HPCGATE_TOKEN", "HPCGATE_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    provider = oidc_flow.providers(gateway.url, 30)[0]

    def tell(code: oidc_flow.DeviceCode) -> None:
        approve(code.verification_uri, code.user_code, user)

    return oidc_flow.device_login(provider, tell, sleep=lambda _: None)
