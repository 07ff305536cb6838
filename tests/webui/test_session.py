"""Signing in and out, the security headers, and the CSRF check, in the browser."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import httpx
from playwright.sync_api import Browser, expect

from tests.support.gateway_process import GatewayProcess
from tests.webui.conftest import UiUser, issue_token


def test_a_wrong_token_is_refused_and_opens_no_session(
    gateway: GatewayProcess, browser: Browser
) -> None:
    context = browser.new_context()
    page = context.new_page()
    page.goto(f"{gateway.url}/ui/signin")
    page.get_by_label("Token").fill("hpcg_000000000000_not-a-token")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_contain_text("not valid")
    assert context.cookies() == []
    page.goto(f"{gateway.url}/ui/dashboard")
    assert page.url.endswith("/ui/signin")  # no session: back to the form
    context.close()


def test_signed_in_the_user_sees_their_name_and_every_answer_has_the_headers(ui: UiUser) -> None:
    response = ui.page.goto(f"{ui.base}/ui/dashboard")
    assert response is not None
    expect(ui.page.locator(".who")).to_have_text(ui.name)
    headers = response.headers
    csp = headers["content-security-policy"]
    assert "frame-ancestors 'none'" in csp and "script-src 'self'" in csp
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert headers["x-frame-options"] == "DENY"
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["referrer-policy"] == "same-origin"
    assert headers["cache-control"] == "no-store"
    (cookie,) = ui.context.cookies()
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and cookie["path"] == "/ui"
    asset = httpx.get(f"{ui.base}/ui/static/app.js")
    assert asset.headers["content-security-policy"] == csp


def test_a_state_change_without_the_csrf_token_changes_nothing(ui: UiUser) -> None:
    (cookie,) = ui.context.cookies()
    jar = {cookie["name"]: cookie["value"]}
    form = {"name": "sneaky", "script": "#!/bin/sh\ntrue\n", "system": "local"}
    with httpx.Client(base_url=ui.base, cookies=jar) as browserless:
        for csrf in ({}, {"csrf": "forged"}, {"csrf": "é"}):  # not ASCII: 403, not 500
            answer = browserless.post("/ui/jobs", data={**form, **csrf})
            assert answer.status_code == 403, answer.text
        answer = browserless.post("/ui/jobs", data=form, headers={"Origin": "http://evil.test"})
        assert answer.status_code == 403
    jobs = ui.api.get("/api/v1/systems/local/jobs").json()["items"]
    assert jobs == []


def test_signing_out_ends_the_session_on_the_server(ui: UiUser) -> None:
    (cookie,) = ui.context.cookies()
    ui.page.get_by_role("button", name="Sign out").click()
    ui.page.wait_for_url(f"{ui.base}/ui/signin")
    replayed = httpx.get(f"{ui.base}/ui/dashboard", cookies={cookie["name"]: cookie["value"]})
    assert replayed.status_code == 303 and replayed.headers["location"] == "/ui/signin"


@contextmanager
def _signed_in(gateway: GatewayProcess, token: str) -> Iterator[httpx.Client]:
    """A client with a session, signed in as a browser would (the same origin)."""
    with httpx.Client(base_url=gateway.url, timeout=30) as client:
        answer = client.post("/ui/signin", data={"token": token}, headers={"Origin": gateway.url})
        assert answer.status_code == 303, answer.text
        yield client


def test_another_users_job_is_not_found_and_their_token_not_revoked(
    ui: UiUser, gateway: GatewayProcess
) -> None:
    spec = {"name": "private", "script": "#!/bin/bash\ntrue\n"}
    job = ui.api.post("/api/v1/systems/local/jobs", json=spec).json()
    mine = ui.api.get("/api/v1/tokens").json()[0]["id"]
    with _signed_in(gateway, issue_token(gateway, "uiother")) as other:
        for path in (f"/ui/jobs/local/{job['id']}", f"/ui/jobs/local/{job['id']}/output"):
            assert other.get(path).status_code == 404, path
        page = other.get("/ui/tokens").text
        csrf = page.split('name="csrf" value="')[1].split('"')[0]
        refused = other.post(
            f"/ui/tokens/{mine}/revoke", data={"csrf": csrf}, headers={"Origin": gateway.url}
        )
        assert refused.status_code == 404
    assert ui.api.get("/api/v1/systems").status_code == 200  # still valid


def test_signing_in_works_from_the_keyboard(gateway: GatewayProcess, browser: Browser) -> None:
    context = browser.new_context()
    page = context.new_page()
    page.goto(f"{gateway.url}/ui/signin")
    page.keyboard.press("Tab")
    expect(page.get_by_role("link", name="Skip to content")).to_be_focused()
    for _ in range(10):  # on to the token field, whatever comes between
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.id") == "token":
            break
    page.keyboard.type(issue_token(gateway, "uikeys"))
    page.keyboard.press("Enter")
    page.wait_for_url(f"{gateway.url}/ui/dashboard")
    context.close()
