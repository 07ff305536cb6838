"""``hpcgate login`` and ``hpcgate logout``: the profile that later commands use."""

from __future__ import annotations

import os
import sys
from typing import Annotated

import typer

from hpcgate.client import Client
from hpcgate.client import _oidc as oidc_flow
from hpcgate.client import _profile as profiles
from hpcgate.model.login import LoginProvider
from hpcgate.usercli.common import Exit, fail, handled
from hpcgate.usercli.output import say


@handled
def login(
    url: Annotated[
        str | None,
        typer.Argument(help="The gateway, e.g. https://hpc.example.org; default: HPCGATE_URL"),
    ] = None,
    token: Annotated[
        str | None,
        typer.Option(
            "--token",
            help="The token; default: read from standard input, or asked for without echo",
        ),
    ] = None,
    profile: Annotated[
        str, typer.Option("--profile", help="Save under this name (and make it current)")
    ] = profiles.DEFAULT,
    oidc: Annotated[
        bool,
        typer.Option(
            "--oidc",
            help="Log in through the gateway's OpenID provider (device flow): open the"
            " address shown and enter the code; the token is refreshed as it expires",
        ),
    ] = False,
    provider: Annotated[
        str | None,
        typer.Option("--provider", help="With --oidc: the provider's name, if there are several"),
    ] = None,
) -> None:
    """Check a gateway URL and token, then save them as a profile (a file of mode 0600).

    Later commands use it when HPCGATE_URL and HPCGATE_TOKEN are not set. With --oidc the
    token comes from the gateway's identity provider, and the profile keeps its refresh
    token too: the SDK and the command line renew the access token before it expires."""
    if oidc and token:
        raise fail(Exit.USAGE, "--oidc gets its token from the provider: leave out --token")
    address = _url(url)
    login = None
    if oidc:
        secret, login = oidc_flow.device_login(_provider(address, provider), _tell)
    else:
        secret = token or _read_token()
    with Client(address, secret) as client:
        names = [system.name for system in client.systems()]
    path = profiles.save(profile, address, secret, login)
    say(f"logged in to {address} (systems: {', '.join(names) or 'none'})")
    say(f"saved as profile {profile!r} in {path}")


def _provider(address: str, name: str | None) -> LoginProvider:
    offered = oidc_flow.providers(address, 30.0)
    chosen = [p for p in offered if name is None or p.name == name]
    if len(chosen) == 1:
        return chosen[0]
    listed = ", ".join(p.name for p in offered) or "none"
    if not chosen:
        raise fail(Exit.NOT_FOUND, f"{address} offers no such provider (offered: {listed})")
    raise fail(Exit.USAGE, f"{address} offers several providers ({listed}): pass --provider")


def _tell(code: oidc_flow.DeviceCode) -> None:
    say(f"To log in, open {code.verification_uri} and enter the code {code.user_code}")
    if code.verification_uri_complete:
        say(f"(or open {code.verification_uri_complete})")
    sys.stdout.flush()


@handled
def logout(
    profile: Annotated[
        str | None, typer.Option("--profile", help="The profile to forget; default: current")
    ] = None,
) -> None:
    """Forget a saved profile (its token keeps working until revoked)."""
    current = os.environ.get("HPCGATE_PROFILE") or profiles.names()[1] or profiles.DEFAULT
    name = profile or current
    if not profiles.remove(name):
        raise fail(Exit.NOT_FOUND, f"no profile {name!r}")
    say(f"forgot profile {name!r}")


def _url(given: str | None) -> str:
    address = given or os.environ.get("HPCGATE_URL") or profiles.load().url
    if not address:
        address = typer.prompt("Gateway URL")
    if not address.startswith(("http://", "https://")):
        raise fail(Exit.USAGE, f"not an http(s) URL: {address}")
    return address.rstrip("/")


def _read_token() -> str:
    if sys.stdin.isatty():
        secret = str(typer.prompt("Token", hide_input=True))
    else:
        secret = sys.stdin.readline()
    if not secret.strip():
        raise fail(Exit.USAGE, "no token given: pass --token, or type it when asked")
    return secret.strip()
