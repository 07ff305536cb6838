"""Admin pages: only a token with the admin scope sees them (403 otherwise, as the API
answers), and their link only shows to such a session."""

from __future__ import annotations

from playwright.sync_api import Browser, expect

from tests.support.gateway_process import GatewayProcess
from tests.support.services import admin_token
from tests.webui.conftest import UiUser, sign_in, with_axe
from tests.webui.test_accessibility import scanned


def test_a_user_is_refused_the_admin_page_and_sees_no_link(ui: UiUser) -> None:
    expect(ui.page.get_by_role("link", name="Admin")).to_have_count(0)
    assert ui.goto("/ui/admin") == 403
    assert ui.goto("/ui/admin?user=alice") == 403


def test_an_admin_sees_usage_and_the_declared_services(
    gateway: GatewayProcess, browser: Browser
) -> None:
    context = browser.new_context()
    try:
        page = context.new_page()
        sign_in(page, gateway.url, admin_token(gateway.home))
        page.get_by_role("link", name="Admin").click()
        expect(page.get_by_role("heading", name="Admin", exact=True)).to_be_visible()
        expect(page.get_by_role("table", name="Requests and tokens")).to_be_visible()
        page.get_by_label("User").fill("nobody-here")
        page.get_by_label("Period").select_option("7")
        page.get_by_role("button", name="Filter").click()
        page.wait_for_url("**/ui/admin?user=nobody-here*days=7")
        expect(page.locator("table").first.locator("tbody tr")).to_have_text("None.")
        with_axe(context)
        assert scanned(page, gateway.url, {"admin": "/ui/admin"}) == {}
    finally:
        context.close()
