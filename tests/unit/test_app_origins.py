"""App origins (webui/apporigins.py): no two services share a label, whatever their names;
a ticket is good once, for its app, until it expires; a grant only on its own app host."""

from __future__ import annotations

import itertools
import re

import pytest
from pydantic import ValidationError

from hpcgate.jobtemplates import UiConfig
from hpcgate.services.proxy import without_gateway_cookies
from hpcgate.webui.apporigins import (
    GRANT_SECONDS,
    TICKET_SECONDS,
    Passes,
    app_label,
    host_label,
)
from hpcgate.webui.sessions import cookie_place

SERVICES = ["lab", "a-b", "a", "ab", "a--b", "a-", "lab-alice", "x" * 40, "xn"]
USERS = ["alice", "b-c", "b--c", "-b", "alice.smith", "a_b", "a@b.org", "lab", "u" * 64, "b"]
LABEL = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")


def test_no_two_services_share_a_label() -> None:
    owners = [None, *USERS]
    labels: dict[str, tuple[str | None, str]] = {}
    for owner, name in itertools.product(owners, SERVICES):
        label = app_label(owner, name)
        if label is None:
            continue
        assert LABEL.fullmatch(label), label  # one DNS label
        assert label[2:4] != "--"  # never an IDNA-reserved one (xn--...)
        assert labels.setdefault(label, (owner, name)) == (owner, name), label
    assert app_label("alice", "lab") == "lab--alice"
    assert app_label(None, "lab") == "lab"
    assert app_label("alice.smith", "lab") not in (None, "lab--alice.smith")
    assert app_label("alice", "a--b") is None  # its name allows none: sandboxed instead
    assert app_label("b-c", "a") != app_label("c", "a-b")


def test_a_host_names_an_app_only_under_the_apps_domain() -> None:
    domain = "apps.example.org"
    assert host_label("lab--alice.apps.example.org:8443", domain) == "lab--alice"
    assert host_label("LAB--Alice.Apps.Example.Org.", domain) == "lab--alice"
    assert host_label("apps.example.org", domain) == ""  # the domain itself: no app
    assert host_label("a.b.apps.example.org", domain) == ""  # deeper than one label
    assert host_label("gw.example.org", domain) is None  # the gateway's own
    assert host_label("evilapps.example.org", domain) is None
    assert host_label("[::1]:8000", domain) is None
    assert host_label("", domain) is None


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_ticket_is_good_once_for_its_app_until_it_expires() -> None:
    clock = Clock()
    passes = Passes(clock)
    ticket = passes.ticket("session", "alice", "alice", "lab", "lab--alice", "/")
    assert passes.redeem(ticket, "lab--bob") is None  # another app's host: used up too
    assert passes.redeem(ticket, "lab--alice") is None

    ticket = passes.ticket("session", "alice", "alice", "lab", "lab--alice", "/")
    redeemed = passes.redeem(ticket, "lab--alice")
    assert redeemed is not None
    secret, grant = redeemed
    assert (grant.user, grant.owner, grant.name) == ("alice", "alice", "lab")
    assert passes.redeem(ticket, "lab--alice") is None  # replayed
    assert passes.grant(secret, "lab--alice") == grant
    assert passes.grant(secret, "lab--bob") is None
    assert passes.grant(ticket, "lab--alice") is None  # a ticket is no cookie

    late = passes.ticket("session", "alice", "alice", "lab", "lab--alice", "/")
    clock.now += TICKET_SECONDS
    assert passes.redeem(late, "lab--alice") is None  # expired
    clock.now += GRANT_SECONDS
    assert passes.grant(secret, "lab--alice") is None
    assert passes.grant("x" * 1000, "lab--alice") is None


@pytest.mark.parametrize(
    "domain", ["localhost", "-apps.org", "apps.org:8000", "*.apps.org", "Apps.org", "a..org"]
)
def test_an_apps_domain_is_lower_case_dns_labels(domain: str) -> None:
    with pytest.raises(ValidationError, match="apps_domain"):
        UiConfig(apps_domain=domain)
    assert UiConfig(apps_domain="apps.localhost").apps_domain == "apps.localhost"


def test_the_gateways_cookies_never_reach_a_replica() -> None:
    header = b"a=1; hpcgate_session=s; __Host-hpcgate_session=t; b=2; hpcgate_app=g; xhpcgate_app=3"
    assert without_gateway_cookies(header) == b"a=1; b=2; xhpcgate_app=3"
    assert without_gateway_cookies(b"__Host-hpcgate_app=g; hpcgate_oidc=o") == b""


def test_over_https_the_web_interfaces_cookies_are_host_only() -> None:
    assert cookie_place("hpcgate_session", "/ui", secure=True) == ("__Host-hpcgate_session", "/")
    assert cookie_place("hpcgate_session", "/ui", secure=False) == ("hpcgate_session", "/ui")
