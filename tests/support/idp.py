"""A real OpenID provider for tests: node-oidc-provider run by ``scripts/idp run`` on a
port of its own, and the flows a client and a user go through against it.

It is installed (npm) on first use into ``HPCGATE_IDP_BASE`` (/tmp/hpcgate-idp). Without
node or the npm registry the tier is skipped, and in CI (``CI`` set) it fails instead.
"""

from __future__ import annotations

import base64
import hashlib
import html
import os
import re
import secrets
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest

from tests.support.gateway_process import free_port

ROOT = Path(__file__).resolve().parents[2]
CLI_CLIENT = "hpcgate-cli"
PKCE_CLIENT = "hpcgate-pkce"
CI_CLIENT, CI_SECRET = "ci-pipeline", "ci-pipeline-secret"
GATEWAY_CLIENT, GATEWAY_SECRET = "hpcgate-gateway", "hpcgate-gateway-secret"
WEB_CLIENT, WEB_SECRET = "hpcgate-web", "hpcgate-web-secret"
DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"


def unavailable(reason: str) -> None:
    """Skip the tier here; in CI fail it, since CI must run it."""
    if os.environ.get("CI"):
        pytest.fail(f"the OIDC tier must run in CI, but {reason}")
    pytest.skip(reason)


def install() -> None:
    """``scripts/idp install``: idempotent, about 10 s the first time."""
    try:
        subprocess.run([ROOT / "scripts" / "idp", "install"], check=True, timeout=300)
    except (OSError, subprocess.SubprocessError) as exc:
        unavailable(f"the OpenID provider cannot be installed: {exc}")


@dataclass
class IdP:
    """One provider process; its keys live in ``state`` across restarts."""

    state: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def issuer(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, rotate: bool = False, retire: bool = False) -> None:
        env = {**os.environ, "IDP_PORT": str(self.port), "IDP_KEYS": str(self.state / "keys.json")}
        env |= {"IDP_ROTATE": "1" if rotate else "0", "IDP_RETIRE": "1" if retire else "0"}
        with (self.state / "idp.log").open("ab") as log:
            self.process = subprocess.Popen(
                [ROOT / "scripts" / "idp", "run"], env=env, stdout=log, stderr=log
            )
        try:
            self._wait_ready()
        except BaseException:  # skipped or failed: leave no provider behind
            self.stop()
            raise

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                unavailable(f"the OpenID provider exited:\n{self.log_tail()}")
            try:
                httpx.get(f"{self.issuer}/.well-known/openid-configuration", timeout=1)
                return
            except httpx.TransportError:
                time.sleep(0.05)
        unavailable(f"the OpenID provider did not start:\n{self.log_tail()}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(timeout=30)
        self.process = None

    def restart(self, rotate: bool = False, retire: bool = False) -> None:
        self.stop()
        self.start(rotate, retire)

    def log_tail(self) -> str:
        path = self.state / "idp.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""

    # -- what a test asks of it ------------------------------------------------------

    def jwks_fetches(self) -> int:
        return int(httpx.get(f"{self.issuer}/_test/stats").json()["jwks"])

    def jwks_down(self, down: bool) -> None:
        httpx.post(f"{self.issuer}/_test/jwks", params={"down": "1" if down else "0"})

    def set_claims(self, user: str, claims: dict[str, object]) -> None:
        """The claims (email, groups ...) the provider puts in ``user``'s access tokens."""
        response = httpx.post(f"{self.issuer}/_test/account", params={"sub": user}, json=claims)
        assert response.status_code == 200, response.text

    def sign(self, claims: dict[str, object], alg: str = "RS256") -> str:
        """``claims`` signed with the provider's current key: hand-made, for attack cases."""
        response = httpx.post(f"{self.issuer}/_test/sign", params={"alg": alg}, json=claims)
        assert response.status_code == 200, response.text
        return response.text

    def client_credentials(self, scope: str, resource: str | None = None) -> str:
        """An access token for the CI pipeline client."""
        form = {"grant_type": "client_credentials", "scope": scope}
        if resource is not None:
            form["resource"] = resource
        response = httpx.post(f"{self.issuer}/token", data=form, auth=(CI_CLIENT, CI_SECRET))
        assert response.status_code == 200, response.text
        return str(response.json()["access_token"])

    def device_flow(self, user: str, scope: str) -> str:
        """An access token for the CLI client through RFC 8628: the device asks, the user
        approves the code in a browser (here: httpx filling in the provider's own pages),
        the device polls."""
        start = httpx.post(
            f"{self.issuer}/device/auth", data={"client_id": CLI_CLIENT, "scope": scope}
        ).json()
        poll = {"grant_type": DEVICE_GRANT, "device_code": start["device_code"]}
        poll["client_id"] = CLI_CLIENT
        pending = httpx.post(f"{self.issuer}/token", data=poll).json()
        assert pending["error"] == "authorization_pending", pending
        approve(start["verification_uri"], start["user_code"], user)
        response = httpx.post(f"{self.issuer}/token", data=poll)
        assert response.status_code == 200, response.text
        return str(response.json()["access_token"])

    def authorization_code(self, user: str, scope: str) -> str:
        """An access token for the PKCE client (RFC 7636) through its loopback redirect: the
        user signs in and consents in a browser, the app trades the code and its verifier."""
        verifier = secrets.token_urlsafe(48)
        challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
        redirect = f"http://127.0.0.1:{free_port()}/callback"  # a native app's own port
        query = {"client_id": PKCE_CLIENT, "redirect_uri": redirect, "response_type": "code"}
        query |= {"scope": scope, "code_challenge": challenge.rstrip(b"=").decode()}
        query |= {"code_challenge_method": "S256", "state": secrets.token_urlsafe(16)}
        code = sign_in(f"{self.issuer}/auth?{urlencode(query)}", redirect, user)
        form = {"grant_type": "authorization_code", "code": code, "redirect_uri": redirect}
        form |= {"client_id": PKCE_CLIENT, "code_verifier": verifier}
        response = httpx.post(f"{self.issuer}/token", data=form)
        assert response.status_code == 200, response.text
        return str(response.json()["access_token"])


def sign_in(url: str, redirect: str, user: str) -> str:
    """What a user does in a browser for an app's authorization request: sign in, consent;
    the code the provider then sends to the app's ``redirect``."""
    with httpx.Client(timeout=30) as browser:
        page = browser.get(url)
        for _ in range(12):
            location = page.headers.get("location", "")
            if location.startswith(redirect):
                return str(parse_qs(urlsplit(location).query)["code"][0])
            if page.is_redirect:
                page = browser.get(page.url.join(location))
                continue
            action, fields = _form(page.text)
            fields |= {"login": user, "password": "any"} if "login" in fields else {}
            page = browser.post(page.url.join(action), data=fields)
        raise AssertionError(f"no code came back:\n{page.text[:2000]}")


_FORM = re.compile(r"<form[^>]*?action=\"([^\"]+)\"[^>]*>(.*?)</form>", re.S)
_INPUT = re.compile(r"<input([^>]*)>")
_ATTR = re.compile(r"(\w+)=\"([^\"]*)\"")


def _form(page: str) -> tuple[str, dict[str, str]]:
    """The first form of a page with an action: where it posts and its named fields."""
    match = _FORM.search(page)
    assert match is not None, page[:2000]
    fields: dict[str, str] = {}
    for attributes in _INPUT.findall(match.group(2)):
        attrs = dict(_ATTR.findall(attributes))
        if "name" in attrs:
            fields[attrs["name"]] = html.unescape(attrs.get("value", ""))
    return html.unescape(match.group(1)), fields


def approve(verification_uri: str, user_code: str, user: str) -> None:
    """What a user does in a browser: enter the code, confirm, sign in, consent."""
    with httpx.Client(follow_redirects=True, timeout=30) as browser:
        page = browser.get(verification_uri)
        for _ in range(6):  # code, confirm, login, consent: each page one form
            if "Sign-in Success" in page.text:
                return
            action, fields = _form(page.text)
            fields |= {"user_code": user_code} if "user_code" in fields else {}
            fields |= {"login": user, "password": "any"} if "login" in fields else {}
            fields.pop("abort", None)
            page = browser.post(httpx.URL(str(page.url)).join(action), data=fields)
        raise AssertionError(f"the device was not approved:\n{page.text[:2000]}")
