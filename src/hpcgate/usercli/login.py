"""``hpcgate login`` and ``hpcgate logout``: the profile that later commands use."""

from __future__ import annotations

import os
import sys
from typing import Annotated

import typer

from hpcgate.client import Client
from hpcgate.client import _profile as profiles
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
) -> None:
    """Check a gateway URL and token, then save them as a profile (a file of mode 0600).

    Later commands use it when HPCGATE_URL and HPCGATE_TOKEN are not set."""
    address = _url(url)
    secret = token or _read_token()
    with Client(address, secret) as client:
        names = [system.name for system in client.systems()]
    path = profiles.save(profile, address, secret)
    say(f"logged in to {address} (systems: {', '.join(names) or 'none'})")
    say(f"saved as profile {profile!r} in {path}")


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
