"""The web interface in a real headless Chromium against a real gateway process (the
session's, from tests/conftest.py): each test signs in a user of its own."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
from playwright.sync_api import (
    Browser,
    BrowserContext,
    ConsoleMessage,
    Dialog,
    Page,
    Playwright,
    sync_playwright,
)

from tests.support.browser import ARGS, AXE, CHROMIUM, check_installed
from tests.support.gateway_process import GatewayProcess
from tests.support.services import admin_token


@pytest.fixture(scope="package")
def playwright() -> Iterator[Playwright]:
    check_installed()
    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="package")
def browser(playwright: Playwright) -> Iterator[Browser]:
    launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
    yield launched
    launched.close()


@dataclass
class UiUser:
    """A user of their own, signed in in a browser context of their own."""

    name: str
    token: str
    api: httpx.Client
    context: BrowserContext
    page: Page
    base: str
    dialogs: list[str]
    refused: list[str]  # what the page's Content-Security-Policy refused, as the console said

    def goto(self, path: str) -> int:
        response = self.page.goto(self.base + path)
        assert response is not None
        return response.status


def sign_in(page: Page, base: str, token: str) -> None:
    page.goto(f"{base}/ui/signin")
    page.get_by_label("Token").fill(token)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{base}/ui/dashboard")


def issue_token(gateway: GatewayProcess, user: str) -> str:
    """A token for ``user``, issued over the API with the admin token of the first start
    (quicker than a ``hpcgate token create`` process per test)."""
    with gateway.client(admin_token(gateway.home)) as client:
        answer = client.post("/api/v1/tokens", json={"user": user})
    assert answer.status_code == 201, answer.text
    return str(answer.json()["token"])


def with_axe(context: BrowserContext) -> None:
    """Every page loaded from now on gets axe-core, through the DevTools protocol (so the
    page's CSP still holds); only the scans pay for its 0.5 MB."""
    context.add_init_script(path=AXE)


@pytest.fixture
def ui(gateway: GatewayProcess, browser: Browser) -> Iterator[UiUser]:
    name = f"ui{uuid.uuid4().hex[:10]}"
    token = issue_token(gateway, name)
    context = browser.new_context(accept_downloads=True)
    context.set_default_timeout(30_000)
    page = context.new_page()
    dialogs: list[str] = []

    def dismissed(dialog: Dialog) -> None:  # a script ran: alert(), confirm(), prompt()
        dialogs.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", dismissed)
    refused: list[str] = []

    def console(message: ConsoleMessage) -> None:
        if "Content Security Policy" in message.text:
            refused.append(message.text)

    page.on("console", console)
    sign_in(page, gateway.url, token)
    with gateway.client(token) as api:
        yield UiUser(name, token, api, context, page, gateway.url, dialogs, refused)
    context.close()
