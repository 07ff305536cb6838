"""The pool's worker secret, with a real gateway and its worker as a real job: only the
gateway can drive a worker (a request without the secret, or with a wrong one, is a 401
and runs nothing), and the secret is nowhere a user or another process could read it."""

from __future__ import annotations

import base64
import os
import re
import sqlite3
import stat
from pathlib import Path

import httpx

from tests.support.functions import FUNCTIONS, data, invoked, register, wait_workers
from tests.support.gateway_process import GatewayProcess, user_client

alice = user_client("alice")

TOUCH = """
def f(path):
    open(path, "w").close()
    return "ran"
"""


def _secret(gateway: GatewayProcess, name: str) -> str:
    with sqlite3.connect(gateway.home / "hpcgate.db") as db:
        (secret,) = db.execute(
            "SELECT worker_secret FROM functions WHERE name = ?", (name,)
        ).fetchone()
    assert isinstance(secret, str) and len(secret) >= 43
    return secret


def _worker_url(client: httpx.Client, name: str) -> str:
    ready = [w for w in wait_workers(client, name) if w["state"] == "ready"]
    return f"http://{ready[0]['address']}:{ready[0]['port']}"


def test_only_the_gateway_drives_a_worker(
    gateway: GatewayProcess, alice: httpx.Client, tmp_path: Path
) -> None:
    name = register(alice, TOUCH, min_workers=1)
    url = _worker_url(alice, name)
    os.chmod(tmp_path, 0o777)  # noqa: S103 - the worker (alice) leaves its marker here
    for headers in ({}, {"X-Hpcgate-Worker-Secret": "not-the-secret"}):
        marker = tmp_path / f"ran-{len(headers)}"
        body = {"id": f"direct{len(headers)}", "input": {"path": str(marker)}}
        answer = httpx.post(f"{url}/invocations", json=body, headers=headers, timeout=30)
        assert answer.status_code == 401, answer.text
        assert httpx.get(f"{url}/invocations/direct0", headers=headers).status_code == 401
        assert not marker.exists()
    assert httpx.get(f"{url}/health", timeout=30).json()["status"] == "ok"  # health is open
    marker = tmp_path / "through-the-gateway"
    with invoked(alice, name, {"path": str(marker)}) as (_, events):
        final = list(events)[-1]
    assert (final.event, data(final)) == ("result", "ran")
    assert marker.exists()


def test_the_secret_is_shown_nowhere_and_rotates(
    gateway: GatewayProcess, alice: httpx.Client
) -> None:
    name = register(alice, TOUCH, min_workers=1)
    wait_workers(alice, name)
    secret = _secret(gateway, name)
    shown = [
        alice.get(f"{FUNCTIONS}/{name}").text,
        alice.get(FUNCTIONS).text,
        alice.get("/api/v1/systems/local/jobs", params={"limit": 1000}).text,
        alice.post(f"{FUNCTIONS}/{name}/invoke", json={"path": 3}).text,  # a failure's answer
        gateway.log(),
    ]
    assert not [text for text in shown if secret in text]
    scripts = [path for path in _spool(gateway).rglob("script") if secret in _spec_of(path)]
    assert scripts, "the pool's job script carries the secret"
    for script in scripts:  # readable by its owner only, in a directory only it enters
        assert stat.S_IMODE(script.stat().st_mode) & 0o077 == 0
        assert stat.S_IMODE(script.parent.stat().st_mode) & 0o077 == 0
    assert not [pid for pid in _processes() if secret in _seen(pid)]
    alice.delete(f"{FUNCTIONS}/{name}")
    again = register(alice, TOUCH, name=name)
    assert _secret(gateway, again) != secret  # a pool made again has a new one


def _spool(gateway: GatewayProcess) -> Path:
    return gateway.home / "systems" / "local" / "spool"


def _spec_of(script: Path) -> str:
    """The spec a pool's job script hands its worker (base64: the script's last literal)."""
    found = re.findall(r'b"([A-Za-z0-9+/=]+)"', script.read_text())
    return base64.b64decode(found[-1]).decode() if found else ""


def _processes() -> list[str]:
    return [entry for entry in os.listdir("/proc") if entry.isdigit()]


def _seen(pid: str) -> str:
    """What any process of the machine may show of another: its argv and environment."""
    try:
        return b"".join(
            Path(f"/proc/{pid}/{what}").read_bytes() for what in ("cmdline", "environ")
        ).decode(errors="replace")
    except OSError:  # it ended meanwhile
        return ""
