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


def test_a_token_limited_in_the_page_is_limited_in_the_api(ui: UiUser) -> None:
    ui.goto("/ui/tokens")
    ui.page.get_by_label("Only the system").select_option("local")
    ui.page.get_by_label("Read only").check()
    ui.page.get_by_label("Description").fill("read-only, local")
    ui.page.get_by_role("button", name="Create").click()
    secret = ui.page.get_by_label("Secret").input_value()
    (info,) = [t for t in ui.api.get("/api/v1/tokens").json() if t["id"] in secret]
    headers = {"Authorization": f"Bearer {secret}"}
    with httpx.Client(base_url=ui.base, headers=headers) as made:
        assert made.get("/api/v1/systems/local/files/ls", params={"path": "."}).status_code == 200
        refused = made.post("/api/v1/systems/local/files/mkdir", json={"path": "nope"})
        assert refused.status_code == 403, refused.text
        assert made.get("/api/v1/services").status_code == 403  # not a system's route
    assert info["read_only"] is True and info["system"] == "local", info


def test_a_limit_the_api_refuses_is_shown_not_made(ui: UiUser) -> None:
    before = len(ui.api.get("/api/v1/tokens").json())
    ui.goto("/ui/tokens")
    ui.page.get_by_label("Only the system").select_option("local")
    ui.page.get_by_label("Only the service").fill("chat")  # a service limit takes no system
    ui.page.get_by_role("button", name="Create").click()
    expect(ui.page.get_by_role("alert")).to_be_visible()
    assert ui.page.get_by_label("Secret").count() == 0
    assert len(ui.api.get("/api/v1/tokens").json()) == before
