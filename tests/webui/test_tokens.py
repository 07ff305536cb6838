"""Tokens in the browser: create one with fewer scopes and a lifetime, use it, revoke it."""

from __future__ import annotations

import httpx
from playwright.sync_api import expect

from tests.webui.conftest import UiUser


def test_create_a_token_use_it_and_revoke_it(ui: UiUser) -> None:
    ui.goto("/ui/tokens")
    for scope in ("jobs:write", "files:read", "files:write"):
        ui.page.get_by_label(scope).uncheck()
    ui.page.get_by_label("Expires").select_option(label="1 hour")
    ui.page.get_by_label("Description").fill("made in the browser")
    ui.page.get_by_role("button", name="Create").click()
    secret = ui.page.get_by_label("Secret").input_value()
    assert secret.startswith("hpcg_")

    headers = {"Authorization": f"Bearer {secret}"}
    with httpx.Client(base_url=ui.base, headers=headers) as made:
        assert made.get("/api/v1/systems").status_code == 200
        assert made.get("/api/v1/systems/local/files/ls", params={"path": "."}).status_code == 403
        (info,) = [t for t in ui.api.get("/api/v1/tokens").json() if t["id"] in secret]
        assert info["scopes"] == ["jobs:read"] and info["expires_at"] is not None
        row = ui.page.locator(f"#token-{info['id']}")
        expect(row).to_contain_text("made in the browser")
        row.get_by_role("button", name="Revoke").click()
        expect(ui.page.locator(f"#token-{info['id']}")).to_contain_text("revoked")
        assert made.get("/api/v1/systems").status_code == 401
