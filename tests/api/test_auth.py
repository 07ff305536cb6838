"""Tokens: missing, invalid, expired, revoked (401); missing scope (403); admin tokens."""

from __future__ import annotations

import json
import sqlite3
import stat
import time
from datetime import datetime

import httpx

from tests.support.gateway_process import GatewayProcess, cli

JOBS = "/api/v1/systems/local/jobs"
HELLO = {"script": "#!/bin/bash\necho hi"}


def _problem(response: httpx.Response, status: int) -> dict[str, object]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body = dict(response.json())
    assert body["status"] == status and body["title"] and str(body["type"]).startswith("http")
    return body


def test_missing_and_malformed_tokens_are_401(gateway: GatewayProcess) -> None:
    with gateway.client(None) as anonymous:
        response = anonymous.get(JOBS)
        _problem(response, 401)
        assert response.headers["www-authenticate"] == "Bearer"
    for bad in ("nonsense", "hpcg_000000000000_" + "A" * 43):
        with gateway.client(bad) as client:
            _problem(client.get(JOBS), 401)


def test_a_tampered_secret_is_refused(gateway: GatewayProcess) -> None:
    token = gateway.token("carol")
    tampered = token[:-1] + ("A" if token[-1] != "A" else "B")
    with gateway.client(tampered) as client:
        _problem(client.get(JOBS), 401)
    with gateway.client(token) as client:
        assert client.get(JOBS).status_code == 200


def test_revoked_token_stops_working_at_once(gateway: GatewayProcess) -> None:
    token = gateway.token("dave")
    with gateway.client(token) as client:
        assert client.get(JOBS).status_code == 200
        cli(gateway.home, "token", "revoke", token.split("_")[1])
        assert _problem(client.get(JOBS), 401)["detail"] == "token revoked"


def test_expired_token_is_refused(gateway: GatewayProcess) -> None:
    token = gateway.token("erin", expires_in="1s")
    time.sleep(1.2)
    with gateway.client(token) as client:
        assert _problem(client.get(JOBS), 401)["detail"] == "token expired"


def test_read_only_token_cannot_submit_or_cancel(gateway: GatewayProcess) -> None:
    with gateway.client(gateway.token("frank", "jobs:read")) as client:
        assert client.get(JOBS).status_code == 200
        _problem(client.post(JOBS, json=HELLO), 403)
        assert client.get(JOBS).json()["items"] == []
        _problem(client.delete(f"{JOBS}/1"), 403)


def test_write_only_token_cannot_read(gateway: GatewayProcess) -> None:
    with gateway.client(gateway.token("grace", "jobs:write")) as client:
        assert client.post(JOBS, json=HELLO).status_code == 201
        _problem(client.get(JOBS), 403)


def test_first_start_wrote_an_admin_token_readable_only_by_its_owner(
    gateway: GatewayProcess,
) -> None:
    path = gateway.home / "admin-token"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    with gateway.client(path.read_text().strip()) as admin:
        metrics = admin.get("/metrics")
        assert metrics.status_code == 200
        assert "hpcgate_scheduler_commands_total" in metrics.text
    assert "admin-token" in gateway.log()


def test_metrics_need_the_admin_scope(alice: httpx.Client) -> None:
    _problem(alice.get("/metrics"), 403)


def test_token_api_creates_lists_and_revokes_own_tokens(
    alice: httpx.Client, gateway: GatewayProcess
) -> None:
    created = alice.post("/api/v1/tokens", json={"scopes": ["jobs:read"], "expires_in": 600})
    assert created.status_code == 201
    token = created.json()["token"]
    with gateway.client(token) as narrow:
        assert narrow.get(JOBS).status_code == 200
        _problem(narrow.post("/api/v1/tokens", json={"scopes": ["jobs:write"]}), 403)
        _problem(narrow.post("/api/v1/tokens", json={"user": "bob"}), 403)
    listed = alice.get("/api/v1/tokens").json()
    assert {t["user"] for t in listed} == {"alice"}
    assert created.json()["id"] in {t["id"] for t in listed}
    assert "token" not in listed[0]
    assert alice.delete(f"/api/v1/tokens/{created.json()['id']}").status_code == 204
    with gateway.client(token) as narrow:
        _problem(narrow.get(JOBS), 401)


TOKENS = "/api/v1/tokens"


def _expiry(info: dict[str, object]) -> datetime:
    return datetime.fromisoformat(str(info["expires_at"]))


def _mint(client: httpx.Client, **body: object) -> dict[str, object]:
    created = client.post(TOKENS, json=body)
    assert created.status_code == 201, created.text
    return dict(created.json())


def test_a_token_never_issues_one_that_outlives_it(gateway: GatewayProcess) -> None:
    parent = gateway.token("judy", expires_in="60s")
    with gateway.client(parent) as client:
        mine = next(t for t in client.get(TOKENS).json() if t["id"] == parent.split("_")[1])
        child = _mint(client)
        assert child["expires_at"] is not None and _expiry(child) == _expiry(mine)
        assert _expiry(_mint(client, expires_in=10)) < _expiry(mine)
        for longer in (61, 3600):
            _problem(client.post(TOKENS, json={"expires_in": longer}), 403)
    with gateway.client(str(child["token"])) as grandparent:
        grandchild = _mint(grandparent)
        assert _expiry(grandchild) == _expiry(mine)
        _problem(grandparent.post(TOKENS, json={"expires_in": 3600}), 403)


def test_an_expiring_admin_token_cannot_issue_a_lasting_one(gateway: GatewayProcess) -> None:
    with gateway.client(gateway.token("admin2", "admin", expires_in="60s")) as admin:
        for body in ({}, {"user": "kim", "scopes": ["admin"]}):
            assert _mint(admin, **body)["expires_at"] is not None
        _problem(admin.post(TOKENS, json={"user": "kim", "expires_in": 3600}), 403)


def test_revoking_a_token_revokes_every_token_it_issued(
    alice: httpx.Client, gateway: GatewayProcess
) -> None:
    parent = _mint(alice, scopes=["jobs:read", "jobs:write"])
    with gateway.client(str(parent["token"])) as client:
        child = _mint(client)
    with gateway.client(str(child["token"])) as client:
        grandchild = _mint(client, scopes=["jobs:read"])
    sibling = _mint(alice)
    assert alice.delete(f"{TOKENS}/{parent['id']}").status_code == 204
    for revoked in (parent, child, grandchild):
        with gateway.client(str(revoked["token"])) as client:
            assert _problem(client.get(JOBS), 401)["detail"] == "token revoked"
    listed = {t["id"]: t for t in alice.get(TOKENS).json()}
    assert all(listed[str(t["id"])]["revoked_at"] for t in (parent, child, grandchild))
    with gateway.client(str(sibling["token"])) as client:
        assert client.get(JOBS).status_code == 200


def test_a_token_without_scopes_is_refused_and_not_stored(gateway_user: httpx.Client) -> None:
    before = gateway_user.get(TOKENS).json()
    _problem(gateway_user.post(TOKENS, json={"scopes": []}), 422)
    assert gateway_user.get(TOKENS).json() == before


def test_a_stored_token_that_cannot_be_shown_does_not_break_lists(
    gateway: GatewayProcess,
) -> None:
    token = gateway.token("lena")
    good = token.split("_")[1]
    with sqlite3.connect(gateway.home / "hpcgate.db") as database:
        database.execute(
            "INSERT INTO tokens (id, user, secret_hash, scopes, description, created_at)"
            " VALUES ('badbadbadbad', 'lena', 'x', '', '', '2026-01-01 00:00:00.000000')"
        )
    admin_token = (gateway.home / "admin-token").read_text().strip()
    with gateway.client(token) as lena, gateway.client(admin_token) as admin:
        for client, query in ((lena, ""), (admin, "?user=lena"), (admin, "")):
            listed = client.get(TOKENS + query)
            assert listed.status_code == 200, listed.text
            ids = {t["id"] for t in listed.json()}
            assert good in ids and "badbadbadbad" not in ids
    assert "token badbadbadbad cannot be shown" in gateway.log()


def test_cli_prints_the_token_alone_on_the_last_line(gateway: GatewayProcess) -> None:
    result = cli(
        gateway.home, "token", "create", "heidi", "--scope", "jobs:read", "--expires-in", "2h"
    )
    last = result.stdout.strip().splitlines()[-1]
    assert last.startswith("hpcg_") and " " not in last
    listing = cli(gateway.home, "token", "list", "--user", "heidi").stdout
    assert "heidi" in listing and last not in listing


def test_cli_rejects_unknown_scope_and_bad_user(gateway: GatewayProcess) -> None:
    bad_scope = cli(gateway.home, "token", "create", "ivan", "--scope", "root", check=False)
    assert bad_scope.returncode != 0 and "unknown scope" in bad_scope.stderr
    bad_user = cli(gateway.home, "token", "create", "Bad User", check=False)
    assert bad_user.returncode != 0 and "invalid user name" in bad_user.stderr


def test_config_show_prints_the_effective_configuration_masked(gateway: GatewayProcess) -> None:
    (gateway.home / "pg.toml").write_text(
        'database_url = "postgresql+asyncpg://gw:s3cret@db.example/hpcgate"\n'
        "[systems.cluster]\nslots = 7\n"
    )
    shown = cli(gateway.home, "config", "show", "--config", str(gateway.home / "pg.toml"))
    assert "s3cret" not in shown.stdout
    config = json.loads(shown.stdout)
    assert config["database_url"] == "postgresql+asyncpg://gw:***@db.example/hpcgate"
    assert config["systems"]["cluster"]["slots"] == 7
    broken = gateway.home / "broken.toml"
    broken.write_text("[systems.local]\nslotz = 1\n")
    refused = cli(gateway.home, "config", "show", "--config", str(broken), check=False)
    assert refused.returncode == 2
    assert "slotz" in refused.stderr
