"""Signing in with the identity provider: a real node-oidc-provider (scripts/idp), its own
login and consent pages filled in by Chromium, and a gateway whose web client it knows.
Then the attacks on the flow: a forged state, a replayed code, another session's code."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from playwright.sync_api import Browser, expect

from tests.oidc.conftest import oidc_config
from tests.support.browser import FIREFOX, NODE_MODULES, check_firefox
from tests.support.gateway_process import GatewayProcess, running_gateway
from tests.support.idp import WEB_CLIENT, WEB_SECRET, IdP, install, sign_in
from tests.webui.conftest import issue_token, with_axe
from tests.webui.test_accessibility import scanned

CALLBACK = "/ui/signin/oidc/test/callback"


@pytest.fixture(scope="module")
def idp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[IdP]:
    install()
    provider = IdP(tmp_path_factory.mktemp("idp"))
    try:
        provider.start()
        yield provider
    finally:
        provider.stop()


def _web_gateway(
    idp: IdP, tmp_path_factory: pytest.TempPathFactory, client: str, extra: str = ""
) -> Iterator[GatewayProcess]:
    """A gateway trusting the test IdP, signing in to its pages through web ``client``."""
    config = oidc_config(idp.issuer) + (
        f'web_client_id = "{client}"\nweb_client_secret = "{WEB_SECRET}"\n{extra}'
    )
    yield from running_gateway(tmp_path_factory.mktemp("gateway"), config)


@pytest.fixture(scope="module")
def web_gateway(idp: IdP, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    yield from _web_gateway(idp, tmp_path_factory, WEB_CLIENT)


@pytest.fixture(scope="module")
def short_gateway(idp: IdP, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    """A gateway whose web client's access tokens live 2 s, with no clock leeway."""
    yield from _web_gateway(idp, tmp_path_factory, "hpcgate-web-short", "clock_skew = 0\n")


def test_an_expired_access_token_is_renewed_with_the_refresh_token(
    short_gateway: GatewayProcess, idp: IdP
) -> None:
    with _client(short_gateway) as client:
        url, state = _start(client)
        code = _code(short_gateway, url, "webdave")
        assert client.get(CALLBACK, params={"code": code, "state": state}).status_code == 200
        assert client.get("/ui/dashboard").status_code == 200
        expires = time.time() + 3  # the access token's 2 s, and a second for the clocks
        while time.time() < expires:
            time.sleep(0.5)  # time passing, not a check: the token expires meanwhile
        with ThreadPoolExecutor(4) as pool:  # at once: one renews, the others wait for it
            answers = list(pool.map(lambda _: client.get("/ui/dashboard"), range(4)))
        assert [a.status_code for a in answers] == [200] * 4  # without renewal: 303s
        renewed = answers[0]
        assert "webdave" in renewed.text
        revoked = _revocations(idp)
        ended = client.post("/ui/signout", data={"csrf": _csrf(renewed.text)})
        assert ended.status_code == 303 and client.get("/ui/dashboard").status_code == 303
        assert _revocations(idp) == revoked + 1  # the refresh token revoked at the provider


def _revocations(idp: IdP) -> int:
    return int(httpx.get(f"{idp.issuer}/_test/stats").json()["revocations"])


def _csrf(text: str) -> str:
    return text.split('name="csrf" value="')[1].split('"')[0]


def test_signing_in_through_the_providers_pages(
    web_gateway: GatewayProcess, browser: Browser
) -> None:
    context = browser.new_context()
    context.set_default_timeout(30_000)
    page = context.new_page()
    page.goto(f"{web_gateway.url}/ui/signin")
    page.get_by_role("link", name="Sign in with test").click()
    page.locator("input[name=login]").fill("webalice")  # the provider's own login page
    page.locator("input[name=password]").fill("any")
    page.get_by_role("button", name="Sign-in").click()
    page.get_by_role("button", name="Continue").click()  # its consent page
    page.wait_for_url(f"{web_gateway.url}/ui/dashboard")
    expect(page.locator(".who")).to_have_text("webalice")
    (cookie,) = [c for c in context.cookies() if c["name"] == "hpcgate_session"]
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    assert all(c["name"] != "hpcgate_oidc" for c in context.cookies())  # used up
    assert len(cookie["value"]) < 64  # an id, not a token: the tokens stay on the server
    page.goto(f"{web_gateway.url}/ui/jobs/new")  # the session's token works for the API
    page.get_by_label("Script").fill("#!/bin/bash\necho signed in by the provider\n")
    page.get_by_role("button", name="Submit").click()
    expect(page.locator("#job-output")).to_have_text("signed in by the provider\n")
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url(f"{web_gateway.url}/ui/signin")
    replayed = httpx.get(
        f"{web_gateway.url}/ui/dashboard", cookies={cookie["name"]: cookie["value"]}
    )
    assert replayed.status_code == 303
    context.close()


def _start(client: httpx.Client) -> tuple[str, str]:
    """``client`` (browserless) starts a sign-in: the provider's URL and the state."""
    started = client.get("/ui/signin/oidc/test")
    assert started.status_code == 303, started.text
    url = started.headers["location"]
    query = parse_qs(urlsplit(url).query)
    assert query["code_challenge_method"] == ["S256"] and query["nonce"][0]
    assert "hpcgate_oidc" in client.cookies
    return url, query["state"][0]


def _client(gateway: GatewayProcess, **cookies: str) -> httpx.Client:
    return httpx.Client(base_url=gateway.url, timeout=30, cookies=cookies)


def _code(gateway: GatewayProcess, url: str, user: str) -> str:
    return sign_in(url, gateway.url + CALLBACK, user)


def _refused(answer: httpx.Response, client: httpx.Client) -> None:
    assert answer.status_code == 401, answer.text
    assert "hpcgate_session" not in answer.headers.get("set-cookie", "")
    assert client.get("/ui/dashboard").status_code == 303  # no session: to the sign-in


def test_a_forged_state_opens_no_session(web_gateway: GatewayProcess) -> None:
    with _client(web_gateway) as client:
        url, state = _start(client)
        code = _code(web_gateway, url, "webmallory")
        answer = client.get(CALLBACK, params={"code": code, "state": state[::-1]})
        _refused(answer, client)
        not_ascii = client.get(CALLBACK, params={"code": code, "state": "é" * 8})
        assert not_ascii.status_code == 401  # refused, not a 500
        again = client.get(CALLBACK, params={"code": code, "state": state})  # the real one
        _refused(again, client)  # too late: the forged try used the pending sign-in up


def test_a_replayed_code_opens_no_session(web_gateway: GatewayProcess) -> None:
    with _client(web_gateway) as client:
        url, state = _start(client)
        pending = client.cookies["hpcgate_oidc"]
        code = _code(web_gateway, url, "webbob")
        first = client.get(CALLBACK, params={"code": code, "state": state})
        assert first.status_code == 200 and "hpcgate_session" in first.headers["set-cookie"]
    with _client(web_gateway, hpcgate_oidc=pending) as replay:
        _refused(replay.get(CALLBACK, params={"code": code, "state": state}), replay)


def test_another_sessions_code_opens_no_session(web_gateway: GatewayProcess) -> None:
    with _client(web_gateway) as victim, _client(web_gateway) as attacker:
        victim_url, _ = _start(victim)
        stolen = _code(web_gateway, victim_url, "webcarol")
        _, state = _start(attacker)  # a sign-in of the attacker's own
        answer = attacker.get(CALLBACK, params={"code": stolen, "state": state})
        _refused(answer, attacker)  # the code was issued for the victim's PKCE challenge
        assert "The sign-in failed" in answer.text


def test_the_providers_error_is_shown_as_text(web_gateway: GatewayProcess) -> None:
    with _client(web_gateway) as client:
        _, state = _start(client)
        hostile = "<script>alert(1)</script>"
        answer = client.get(CALLBACK, params={"error": hostile, "state": state})
        _refused(answer, client)
        assert hostile not in answer.text and "&lt;script&gt;alert(1)&lt;/script&gt;" in answer.text


def test_the_sign_in_page_with_a_provider_passes_axe(
    web_gateway: GatewayProcess, browser: Browser
) -> None:
    context = browser.new_context()
    try:
        with_axe(context)
        page = context.new_page()
        found = scanned(page, web_gateway.url, {"signin-oidc": "/ui/signin"})
        assert found == {}
    finally:
        context.close()


def test_an_unknown_provider_is_not_found(web_gateway: GatewayProcess) -> None:
    assert httpx.get(f"{web_gateway.url}/ui/signin/oidc/nobody").status_code == 404


def test_signing_in_and_a_live_job_in_firefox(web_gateway: GatewayProcess) -> None:
    """The same in Firefox: through the provider's pages, then a job's output shown while it
    runs (tests/webui/firefox.cjs, over WebDriver BiDi)."""
    check_firefox()
    token = issue_token(web_gateway, "foxjobs")
    env = {**os.environ, "BASE": web_gateway.url, "TOKEN": token, "FIREFOX": str(FIREFOX)}
    env["HPCGATE_UI_NODE_MODULES"] = str(NODE_MODULES)
    script = Path(__file__).with_name("firefox.cjs")
    ran = subprocess.run(
        ["node", script], env=env, capture_output=True, text=True, timeout=300, check=False
    )
    assert ran.returncode == 0, ran.stderr[-3000:]
    seen = json.loads(ran.stdout.strip().splitlines()[-1])
    assert seen["browser"].startswith("firefox/")
    assert seen["provider_user"] == "foxuser" and seen["token_user"] == "foxjobs"
    assert "first" in seen["before_gate"] and "second" not in seen["before_gate"]  # live
    assert seen["gate_status"] == 201 and seen["output"] == "first\nsecond\n"
