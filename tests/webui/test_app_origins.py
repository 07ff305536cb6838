"""Services opened on origins of their own (``[ui] apps_domain``): JupyterLab started from
the web interface opens in a new tab on ``NAME--USER.apps.localhost`` (Chromium resolves
``*.localhost`` to loopback) and runs a kernel over a WebSocket from there; over plain HTTP,
the one-time ticket, the app host's cookie and the Host routing refuse what they must."""

from __future__ import annotations

import json
import os
import re
import socket
import sysconfig
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import expect
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect
from websockets.typing import Origin

from hpcgate.webui.headers import CSP
from tests.support.accounts import passable
from tests.support.backends import BACKENDS, ensure_backends, write_jupyter
from tests.support.gateway_process import FALLBACK, GatewayProcess
from tests.support.services import (
    FOR_ALICE,
    SYSTEM_PYTHON,
    create_service,
    in_state,
    service_table,
    services_gateway,
    wait_replicas,
)
from tests.webui.conftest import UiUser, issue_token

DOMAIN = "apps.localhost"
HEADERS = Path(__file__).parents[1] / "support" / "header_backend.py"
SOCKETS = Path(__file__).parents[1] / "support" / "socket_backend.py"
HEADERS_SCRIPT = f"#!/bin/sh\nexec {SYSTEM_PYTHON} {HEADERS}\n"
PACKAGES = sysconfig.get_paths()["purelib"]  # websockets, for the socket backend
SOCKETS_SCRIPT = f"#!/bin/sh\nexport PYTHONPATH={PACKAGES}\nexec {SYSTEM_PYTHON} {SOCKETS}\n"
CONFIG = f"""
service_interval = 0.3
service_wait_seconds = 30

[systems.local]
scheduler = "embedded"
status_interval = 0.3
slots = 8

[ui]
apps_domain = "{DOMAIN}"

{service_table("staff", script=HEADERS_SCRIPT, **{**FOR_ALICE, "min_replicas": 0})}
"""
#: In the lab's tab: a kernel started over Jupyter's REST API (its XSRF cookie as the
#: header), then ``1+1`` sent over its channels' WebSocket from this origin; the result.
KERNEL_RUNS = """async () => {
  const xsrf = decodeURIComponent((document.cookie.match(/(?:^|; )_xsrf=([^;]*)/) || ['', ''])[1]);
  const started = await fetch('/api/kernels', {
    method: 'POST', body: '{}',
    headers: {'Content-Type': 'application/json', 'X-XSRFToken': xsrf},
  });
  if (started.status !== 201) return `kernel not started: ${started.status}`;
  const kernel = (await started.json()).id;
  const session = Math.random().toString(16).slice(2);
  const id = Math.random().toString(16).slice(2);
  const socket = new WebSocket(
    `ws://${location.host}/api/kernels/${kernel}/channels?session_id=${session}`);
  return await new Promise((resolve) => {
    socket.onopen = () => socket.send(JSON.stringify({
      header: {msg_id: id, msg_type: 'execute_request', username: 'test', session,
               date: new Date().toISOString(), version: '5.3'},
      parent_header: {}, metadata: {}, channel: 'shell',
      content: {code: '1+1', silent: false, store_history: false, allow_stdin: false},
    }));
    socket.onmessage = (event) => {
      const message = JSON.parse(event.data);
      if (message.msg_type === 'execute_result' && message.parent_header.msg_id === id) {
        resolve(message.content.data['text/plain']);
        socket.close();
      }
    };
    socket.onclose = (event) => resolve(`closed: ${event.code}`);
  });
}"""


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    with services_gateway(tmp_path_factory.mktemp("gateway"), CONFIG) as server:
        yield server


def app_host(gateway: GatewayProcess, label: str) -> str:
    return f"{label}.{DOMAIN}:{gateway.port}"


def test_jupyterlab_opens_on_its_own_origin_and_runs_a_kernel(
    ui: UiUser, gateway: GatewayProcess, tmp_path_factory: pytest.TempPathFactory
) -> None:
    if not (BACKENDS / "venv" / "bin" / "jupyter-lab").exists():
        ensure_backends()
    directory = tmp_path_factory.mktemp("lab")
    passable(directory)
    lab = write_jupyter(directory, owner=FALLBACK if os.geteuid() == 0 else None)
    name = f"j{uuid.uuid4().hex[:8]}"
    ui.goto("/ui/services")
    ui.page.get_by_label("Name (lower-case").fill(name)
    ui.page.get_by_label("Script").fill(lab.script.read_text())
    ui.page.get_by_label("Health path").fill("/api")
    ui.page.get_by_role("button", name="Start").click()
    ui.page.wait_for_url(f"{ui.base}/ui/services/{name}")
    try:
        expect(ui.page.locator("#service-status")).to_have_text("Ready", timeout=180_000)
        origin = f"http://{app_host(gateway, f'{name}--{ui.name}')}"
        with ui.context.expect_page() as opened:
            ui.page.get_by_role("button", name="Open in a new tab").click()
        tab = opened.value
        tab.wait_for_url(f"{origin}/**")
        assert tab.url.startswith(f"{origin}/")  # Jupyter's own sign-in: its token, not ours
        tab.goto(f"{origin}/lab?token={lab.token}")
        expect(tab).to_have_title(re.compile("JupyterLab"), timeout=60_000)
        config = json.loads(tab.locator("#jupyter-config-data").text_content() or "{}")
        assert config["baseUrl"] == "/"
        if shots := os.environ.get("HPCGATE_UI_SCREENSHOTS"):  # the README's picture
            tab.locator(".jp-Launcher-body").wait_for(timeout=60_000)
            tab.screenshot(path=f"{shots}/jupyterlab.png")
        assert tab.evaluate(KERNEL_RUNS) == "2"
        assert "hpcgate" not in tab.evaluate("document.cookie")  # HttpOnly, another host's
        assert ui.dialogs == [] and ui.refused == []
    finally:
        assert ui.api.delete(f"/api/v1/services/{name}").status_code == 202


class Browserless:
    """A user signed in to the web interface over plain HTTP: the session's cookie and
    CSRF token, and the requests a browser would send to the gateway and to app hosts."""

    def __init__(self, gateway: GatewayProcess, user: str, https: bool = False) -> None:
        self.gateway, self.user = gateway, user
        self.token = issue_token(gateway, user)
        self.api = gateway.client(self.token)
        #: As behind a proxy that ends TLS (uvicorn believes it from 127.0.0.1).
        self.proxied = {"x-forwarded-proto": "https"} if https else {}
        self.http = httpx.Client(base_url=gateway.url, timeout=30, headers=self.proxied)
        signed = self.http.post("/ui/signin", data={"token": self.token})
        assert signed.status_code == 303, signed.text
        self.signed_in = signed.headers["set-cookie"]
        name = "__Host-hpcgate_session" if https else "hpcgate_session"
        self.session = signed.cookies[name]
        if https:  # httpx keeps no Secure cookie for http://: the jar gets it as is
            self.http.cookies.set(name, self.session)
        page = self.page("/ui/dashboard")
        self.csrf = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]

    def page(self, path: str) -> httpx.Response:
        return self.http.get(path)

    def ticket_url(self, service: str) -> httpx.URL:
        answer = self.http.post(
            f"/ui/services/{service}/open",
            data={"csrf": self.csrf},
        )
        assert answer.status_code == 303, answer.text
        return httpx.URL(answer.headers["location"])

    def enter(self, url: httpx.URL, host: str | None = None) -> httpx.Response:
        """The ticket's URL followed, to ``host`` (default: the one it names)."""
        target = f"{url.path}?{url.query.decode()}"
        return self.at(host or f"{url.host}:{url.port}", "GET", target)

    def at(self, host: str, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """A request to the gateway's port for ``host`` (as a browser resolving it)."""
        headers = {"host": host, **self.proxied, **kwargs.pop("headers", {})}
        url = self.gateway.url + path  # a client of its own: no cookie kept from before
        return httpx.request(method, url, headers=headers, timeout=30, **kwargs)

    def close(self) -> None:
        self.api.close()
        self.http.close()


@pytest.fixture
def alice(gateway: GatewayProcess) -> Iterator[Browserless]:
    user = Browserless(gateway, f"a{uuid.uuid4().hex[:10]}")
    yield user
    user.close()


@pytest.fixture
def bob(gateway: GatewayProcess) -> Iterator[Browserless]:
    user = Browserless(gateway, f"b{uuid.uuid4().hex[:10]}")
    yield user
    user.close()


def started(user: Browserless, script: str = HEADERS_SCRIPT, name: str | None = None) -> str:
    name = name or f"h{uuid.uuid4().hex[:8]}"
    create_service(user.api, script=script, name=name, min_replicas=1, max_replicas=1)
    wait_replicas(user.api, name, in_state("ready"))
    return name


def test_a_ticket_sets_a_host_only_cookie_and_the_app_sees_only_its_own(
    alice: Browserless, gateway: GatewayProcess
) -> None:
    name = started(alice)
    url = alice.ticket_url(name)
    host = app_host(gateway, f"{name}--{alice.user}")
    assert f"{url.host}:{url.port}" == host and url.path == "/_hpcgate/enter"

    entered = alice.enter(url)
    assert entered.status_code == 303 and entered.headers["location"] == "/"
    cookie = entered.headers["set-cookie"]
    secret = cookie.split(";")[0].removeprefix("hpcgate_app=")
    attributes = {a.strip().split("=")[0].lower() for a in cookie.split(";")[1:]}
    assert {"httponly", "path", "max-age", "samesite"} <= attributes
    assert "domain" not in attributes and "samesite=lax" in cookie.lower()
    assert alice.enter(url).status_code == 403  # replayed

    mine = {"cookie": f"mine=1; hpcgate_app={secret}; hpcgate_session={alice.session}"}
    origin = f"http://{host}"
    seen = alice.at(host, "GET", "/any/path?x=1", headers={**mine, "referer": f"{origin}/lab"})
    assert seen.status_code == 200, seen.text
    sent = dict(seen.json()["headers"])
    assert seen.json()["target"] == "/any/path?x=1"
    assert sent["cookie"] == "mine=1"  # the gateway's own taken out
    assert sent["referer"].endswith("/lab") and not sent["referer"].startswith(origin)
    assert "authorization" not in sent
    # its cookies are for its own host only, and never the app host's own
    assert seen.headers.get_list("set-cookie") == ["app=1; Path=/", "plain=2; Path=/; HttpOnly"]

    posted = alice.at(host, "POST", "/form", headers={**mine, "origin": origin}, content=b"a=1")
    assert posted.status_code == 200 and posted.json()["body"] == "a=1"
    assert dict(posted.json()["headers"])["origin"].startswith("http://127.0.0.1:")
    forged = alice.at(host, "POST", "/form", headers={**mine, "origin": "http://evil.example"})
    assert forged.status_code == 403
    away = alice.at(host, "GET", "/away", headers=mine)
    assert away.status_code == 302 and away.headers["location"] == f"{origin}/there"

    assert alice.at(host, "GET", "/any", headers={"cookie": "mine=1"}).status_code == 401
    assert alice.at(host, "GET", "/_hpcgate/other", headers=mine).status_code == 404
    # the API is never answered on an app host, the gateway's own host is unchanged
    assert alice.at(host, "GET", "/api/v1/health").status_code == 401
    assert alice.at(DOMAIN, "GET", "/api/v1/health").status_code == 404
    assert alice.http.get("/api/v1/health").status_code == 200
    assert alice.at("evil.example", "GET", "/api/v1/health").status_code == 200

    signed_out = alice.http.post("/ui/signout", data={"csrf": alice.csrf})
    assert signed_out.status_code == 303
    assert alice.at(host, "GET", "/any", headers=mine).status_code == 401  # its session ended
    assert alice.api.delete(f"/api/v1/services/{name}").status_code == 202


def test_another_users_ticket_or_cookie_is_refused(
    alice: Browserless, bob: Browserless, gateway: GatewayProcess
) -> None:
    name = f"h{uuid.uuid4().hex[:8]}"
    started(alice, name=name)
    started(bob, name=name)  # the same name: another origin
    alices = app_host(gateway, f"{name}--{alice.user}")
    bobs = app_host(gateway, f"{name}--{bob.user}")

    stolen = bob.ticket_url(name)
    assert alice.enter(stolen, host=alices).status_code == 403  # bob's ticket on alice's host
    assert bob.enter(stolen).status_code == 403  # and it is used up

    entered = bob.enter(bob.ticket_url(name))
    assert entered.status_code == 303
    bobs_cookie = {"cookie": entered.headers["set-cookie"].split(";")[0]}
    assert bob.at(bobs, "GET", "/x", headers=bobs_cookie).status_code == 200
    assert bob.at(alices, "GET", "/x", headers=bobs_cookie).status_code == 401

    for user in (alice, bob):
        assert user.api.delete(f"/api/v1/services/{name}").status_code == 202


def test_a_declared_service_opens_on_its_name_and_one_keeping_its_prefix_there(
    gateway: GatewayProcess,
) -> None:
    user = Browserless(gateway, "alice")  # whom "staff" is declared for
    try:
        url = user.ticket_url("staff")
        assert url.host == f"staff.{DOMAIN}"
        entered = user.enter(url)
        assert entered.status_code == 303 and entered.headers["location"] == "/"
        name = create_service(user.api, script=HEADERS_SCRIPT, keep_prefix=True, min_replicas=0)
        entered = user.enter(user.ticket_url(name))
        assert entered.headers["location"] == f"/api/v1/services/{name}/proxy/"  # it serves there
        assert user.api.delete(f"/api/v1/services/{name}").status_code == 202
    finally:
        user.close()


def test_a_declared_service_the_user_may_not_use_is_not_found(bob: Browserless) -> None:
    answer = bob.http.post("/ui/services/staff/open", data={"csrf": bob.csrf})
    assert answer.status_code == 404
    forged = bob.http.post("/ui/services/staff/open")
    assert forged.status_code == 403  # no CSRF token


def test_the_gateways_pages_keep_their_headers(alice: Browserless, gateway: GatewayProcess) -> None:
    name = create_service(alice.api, script=HEADERS_SCRIPT, min_replicas=0)
    assert alice.page("/ui/dashboard").headers["content-security-policy"] == CSP
    page = alice.page(f"/ui/services/{name}")
    policy = page.headers["content-security-policy"]
    origin = f"http://{app_host(gateway, f'{name}--{alice.user}')}"
    assert policy == CSP.replace("form-action 'self'", f"form-action 'self' {origin}")
    assert page.headers["x-frame-options"] == "DENY"
    assert "x-hpcgate-form-action" not in page.headers
    assert alice.api.delete(f"/api/v1/services/{name}").status_code == 202


def test_a_websocket_must_come_from_the_apps_own_origin(
    alice: Browserless, gateway: GatewayProcess
) -> None:
    name = started(alice, script=SOCKETS_SCRIPT)
    host = app_host(gateway, f"{name}--{alice.user}")
    entered = alice.enter(alice.ticket_url(name))
    cookie = {"Cookie": entered.headers["set-cookie"].split(";")[0]}

    def opened(origin: str | None, headers: dict[str, str]) -> Any:
        sock = socket.create_connection(("127.0.0.1", gateway.port))
        return connect(
            f"ws://{host}/chat",
            sock=sock,
            origin=Origin(origin) if origin else None,
            additional_headers=headers,
        )

    with opened(f"http://{host}", cookie) as ws:
        ws.send("path")
        assert ws.recv(timeout=30) == "/chat"
    for origin, headers, status in (
        ("http://evil.example", cookie, 403),
        (None, cookie, 403),
        (f"http://{host}", {}, 401),
    ):
        with pytest.raises(InvalidStatus) as refused:
            opened(origin, headers).close()
        assert refused.value.response.status_code == status
    assert alice.api.delete(f"/api/v1/services/{name}").status_code == 202


def test_over_https_every_cookie_is_host_only_by_its_prefix(gateway: GatewayProcess) -> None:
    user = Browserless(gateway, f"s{uuid.uuid4().hex[:10]}", https=True)
    try:
        session = user.signed_in.lower()
        assert session.startswith("__host-hpcgate_session=")
        assert "; secure" in session and "; path=/;" in session and "domain" not in session
        name = create_service(user.api, script=HEADERS_SCRIPT, min_replicas=0)
        url = user.ticket_url(name)
        assert url.scheme == "https" and url.host == f"{name}--{user.user}.{DOMAIN}"
        entered = user.enter(url)
        assert entered.status_code == 303, entered.text
        cookie = entered.headers["set-cookie"]
        assert cookie.startswith("__Host-hpcgate_app=") and "secure" in cookie.lower()
        secret = cookie.split(";")[0].partition("=")[2]
        host = app_host(gateway, f"{name}--{user.user}")
        # without its prefix (a cookie any host under the parent domain could have set)
        tossed = user.at(host, "GET", "/any", headers={"cookie": f"hpcgate_app={secret}"})
        assert tossed.status_code == 401
        assert user.api.delete(f"/api/v1/services/{name}").status_code == 202
    finally:
        user.close()
