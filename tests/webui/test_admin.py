"""Admin pages: only a token with the admin scope sees them (403 otherwise, as the API
answers), and their link only shows to such a session."""

from __future__ import annotations

from playwright.sync_api import Browser, Dialog, expect

from tests.support.gateway_process import GatewayProcess
from tests.support.services import admin_token
from tests.webui.conftest import UiUser, sign_in, with_axe
from tests.webui.test_accessibility import scanned
from tests.webui.test_hostile import ATTRIBUTE, SCRIPT


def test_a_user_is_refused_the_admin_page_and_sees_no_link(ui: UiUser) -> None:
    expect(ui.page.get_by_role("link", name="Admin")).to_have_count(0)
    assert ui.goto("/ui/admin") == 403
    assert ui.goto("/ui/admin?user=alice") == 403
    assert ui.goto("/ui/admin/audit") == 403
    assert ui.goto("/ui/admin/jobs?user=alice") == 403


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


def test_an_admin_sees_every_users_jobs_and_the_audit_log(
    ui: UiUser, gateway: GatewayProcess, browser: Browser
) -> None:
    """A user's jobs (hostile names among them, shown as text) on the admin's listing, and
    the user's submits in the audit log, filtered by user and status; each page scanned."""
    for name in (SCRIPT, ATTRIBUTE):
        spec = {"name": name, "script": "#!/bin/bash\ntrue\n"}
        answer = ui.api.post("/api/v1/systems/local/jobs", json=spec)
        assert answer.status_code == 201, answer.text
    refused = ui.api.post("/api/v1/systems/local/jobs", json={"script": ""})
    assert refused.status_code == 422
    context = browser.new_context()
    dialogs: list[str] = []
    try:
        page = context.new_page()

        def dismissed(dialog: Dialog) -> None:  # a script ran
            dialogs.append(dialog.message)
            dialog.dismiss()

        page.on("dialog", dismissed)
        sign_in(page, gateway.url, admin_token(gateway.home))
        page.goto(f"{gateway.url}/ui/admin")
        page.get_by_role("link", name="Every user's jobs and services").click()
        page.get_by_label("User", exact=True).fill(ui.name)
        page.get_by_role("button", name="Filter").click()
        rows = page.get_by_role("table", name="Jobs on local").locator("tbody tr")
        expect(rows).to_have_count(2)
        expect(rows.filter(has_text=SCRIPT)).to_contain_text(ui.name)
        expect(rows.filter(has_text=ATTRIBUTE)).to_have_count(1)
        assert page.locator("main img").count() == 0 and page.locator("main script").count() == 0

        page.get_by_role("link", name="Audit log").click()
        page.get_by_label("User", exact=True).fill(ui.name)
        page.get_by_role("button", name="Filter").click()
        records = page.get_by_role("table", name="Audit records").locator("tbody tr")
        expect(records).to_have_count(3)  # two submits and the refused one
        expect(records.first).to_contain_text("POST /api/v1/systems/{system}/jobs")
        page.get_by_label("Status").fill("422")
        page.get_by_role("button", name="Filter").click()
        expect(records).to_have_count(1)
        expect(records.first).to_contain_text("422")
        invalid = page.goto(f"{gateway.url}/ui/admin/audit?status=99")
        assert invalid is not None and invalid.status == 422
        with_axe(context)
        pages = {
            "admin-jobs": f"/ui/admin/jobs?user={ui.name}",
            "admin-audit": f"/ui/admin/audit?user={ui.name}",
        }
        assert scanned(page, gateway.url, pages) == {}
        assert dialogs == []
    finally:
        context.close()
