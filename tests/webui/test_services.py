"""Services in the browser: start one from the form, watch its replica become ready, open
it through the proxy in a new tab (sandboxed, no cookie passed on), stop it."""

from __future__ import annotations

import uuid

from playwright.sync_api import expect

from tests.support.gateway_process import GatewayProcess
from tests.support.services import backend_script
from tests.webui.conftest import UiUser, issue_token


def test_start_watch_open_and_stop_a_service(ui: UiUser) -> None:
    name = f"w{uuid.uuid4().hex[:8]}"
    ui.goto("/ui/services")
    ui.page.get_by_label("Name (lower-case").fill(name)
    ui.page.get_by_label("Script").fill(backend_script())
    ui.page.get_by_role("button", name="Start").click()
    ui.page.wait_for_url(f"{ui.base}/ui/services/{name}")
    expect(ui.page.locator("#service-status")).to_have_text("Ready", timeout=60_000)  # polled
    expect(ui.page.locator("#replicas tbody")).to_contain_text("ready")

    with ui.context.expect_page() as opened:
        ui.page.get_by_role("link", name="Open in a new tab").click()
    tab = opened.value
    tab.wait_for_load_state()
    assert tab.url == f"{ui.base}/ui/services/open/{name}/"
    answer = tab.goto(f"{ui.base}/ui/services/open/{name}/path/here?x=1")
    assert answer is not None and answer.status == 200
    assert tab.locator("body").inner_text() == "/path/here?x=1"  # what the replica was sent
    headers = answer.all_headers()
    assert "sandbox" in headers["content-security-policy"]
    assert "set-cookie" not in headers
    tab.close()

    ui.page.get_by_role("button", name="Stop").click()
    expect(ui.page.locator("#service-status")).to_contain_text("Stopping")
    listed = ui.api.get(f"/api/v1/services/{name}")
    assert listed.status_code == 404 or listed.json()["stopping"] is True
    assert ui.dialogs == [] and ui.refused == []


def test_a_refused_spec_is_shown_on_the_form(ui: UiUser) -> None:
    ui.goto("/ui/services")
    ui.page.get_by_label("Name (lower-case").fill("bad")
    ui.page.get_by_label("Script").fill("no interpreter line")
    ui.page.get_by_role("button", name="Start").click()
    expect(ui.page.locator("ul.error")).to_contain_text("#!")
    assert ui.api.get("/api/v1/services/bad").status_code == 404


def test_another_users_service_is_not_found(ui: UiUser, gateway: GatewayProcess) -> None:
    name = f"o{uuid.uuid4().hex[:8]}"
    body = {"name": name, "system": "local", "script": backend_script(), "min_replicas": 0}
    with gateway.client(issue_token(gateway, f"other{name}")) as other:
        assert other.post("/api/v1/services", json=body).status_code == 201
        assert ui.goto(f"/ui/services/{name}") == 404
        assert ui.goto(f"/ui/services/open/{name}/") == 404
        ui.goto("/ui/services")
        expect(ui.page.get_by_role("link", name=name)).to_have_count(0)
        assert other.delete(f"/api/v1/services/{name}").status_code == 202
