"""Consent requests on the tokens page, in Chromium against a gateway of its own with
``[consent] token_scopes``: a token another credential of the user made with a marked
scope shows there pending; approved in the page it works, denied it is revoked. The
request's page and the list pass axe-core and stay light."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from tests.support.gateway_process import TEST_CONFIG, GatewayProcess, running_gateway
from tests.webui.conftest import sign_in, with_axe
from tests.webui.test_accessibility import scanned

CONFIG = TEST_CONFIG + '\n[consent]\ntoken_scopes = ["files:write"]\n'
USER = "alice"


@pytest.fixture(scope="module")
def held_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    yield from running_gateway(tmp_path_factory.mktemp("uiconsent"), CONFIG)


@pytest.fixture(scope="module")
def portal(held_gateway: GatewayProcess) -> Iterator[httpx.Client]:
    """A token of the user's that a third party holds: it asks for the marked scope."""
    with held_gateway.client(held_gateway.token(USER)) as client:
        yield client


@pytest.fixture
def page(held_gateway: GatewayProcess, browser: Browser) -> Iterator[Page]:
    """The user signed in with another token of theirs (made by the admin's command line)."""
    context = browser.new_context()
    context.set_default_timeout(30_000)
    with_axe(context)
    signed_in = context.new_page()
    sign_in(signed_in, held_gateway.url, held_gateway.token(USER))
    yield signed_in
    context.close()


def _ask(portal: httpx.Client) -> tuple[str, str]:
    """A held token's consent request and secret."""
    answer = portal.post("/api/v1/tokens", json={"scopes": ["files:write", "jobs:read"]})
    assert answer.status_code == 202, answer.text
    body: dict[str, Any] = answer.json()
    return str(body["consent"]["id"]), str(body["token"]["token"])


def _decide(page: Page, base: str, consent_id: str, button: str) -> None:
    page.goto(f"{base}/ui/tokens")
    row = page.locator(f"#consent-{consent_id}")
    expect(row).to_contain_text("files:write")
    row.get_by_role("link", name="Decide").click()
    expect(page.locator("#consent-state")).to_have_text("pending")
    page.get_by_role("button", name=button, exact=True).click()
    page.wait_for_url(f"{base}/ui/tokens")
    expect(page.locator(f"#consent-{consent_id}")).to_have_count(0)


def test_a_held_token_is_approved_in_the_page_and_then_works(
    held_gateway: GatewayProcess, portal: httpx.Client, page: Page
) -> None:
    consent_id, secret = _ask(portal)
    with held_gateway.client(secret) as made:
        assert made.get("/api/v1/systems").status_code == 202  # held
        pages = {"tokens": "/ui/tokens", "consent": f"/ui/tokens/consents/{consent_id}"}
        assert scanned(page, held_gateway.url, pages) == {}
        _decide(page, held_gateway.url, consent_id, "Approve")
        assert made.get("/api/v1/systems").status_code == 200
    decided = portal.get(f"/api/v1/consents/{consent_id}").json()
    assert decided["state"] == "approved"


def test_a_held_token_denied_in_the_page_is_revoked(
    held_gateway: GatewayProcess, portal: httpx.Client, page: Page
) -> None:
    consent_id, secret = _ask(portal)
    with held_gateway.client(secret) as made:
        assert made.get("/api/v1/systems").status_code == 202  # held
        _decide(page, held_gateway.url, consent_id, "Deny")
        assert made.get("/api/v1/systems").status_code == 401


def test_the_session_that_asked_cannot_approve(held_gateway: GatewayProcess, page: Page) -> None:
    """A token made in the page with a marked scope is held too; this session asked for
    it, so deciding it here is refused (403) and it stays pending."""
    page.goto(f"{held_gateway.url}/ui/tokens")
    for scope in ("jobs:write", "files:read"):
        page.get_by_label(scope).uncheck()
    page.get_by_role("button", name="Create").click()
    expect(page.get_by_role("status")).to_contain_text("needs your consent")
    consent_id = page.locator(".notice code").nth(1).inner_text()
    page.goto(f"{held_gateway.url}/ui/tokens/consents/{consent_id}")
    page.get_by_role("button", name="Approve", exact=True).click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Forbidden")
    page.goto(f"{held_gateway.url}/ui/tokens/consents/{consent_id}")
    expect(page.locator("#consent-state")).to_have_text("pending")
