"""App origins: with ``[ui] apps_domain`` set, each service opened from the web interface
gets an origin of its own, a name under that domain, so an app's scripts and cookies never
share the gateway's origin (nor another app's).

A user's own service is ``NAME--USER.APPS_DOMAIN``, a declared one ``NAME.APPS_DOMAIN``. The
label is one DNS label (a wildcard certificate covers it) and no two services share one:
a service name has the alphabet ``[a-z0-9-]``; the label is made only of names that neither
hold ``--`` nor end (or start) with ``-``, so a declared label holds no ``--``, a user's
holds exactly one, at the one place it splits. A user name outside that alphabet (``.``,
``_``, ``@``) or too long is replaced by a digest of it after ``---`` (which no readable
label holds). A service whose name allows none (``a--b``) opens sandboxed, as without
apps_domain.

The browser gets there with a one-time ticket (:class:`Passes`): minted by the service
page's POST, redeemed once by the app host, which sets a host-only cookie of its own that
names a grant kept here, bound to the session, the user and the service.
"""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

#: The app host's own paths (no app's path under it reaches the app).
RESERVED = "/_hpcgate/"
ENTER = RESERVED + "enter"
#: The app host's cookie; over https with the ``__Host-`` prefix (host-only, path /,
#: Secure: neither a sibling app nor the apps domain can set it).
COOKIE = "hpcgate_app"
SECURE_COOKIE = "__Host-" + COOKIE
TICKET_SECONDS = 60.0
GRANT_SECONDS = 8 * 3600.0
#: At most this many tickets and grants each; past it the oldest is dropped.
PASSES_MAX = 10_000
SECRET_MAX = 128
LABEL_MAX = 63
DIGEST_CHARS = 16  # 80 bits of the user name's SHA-256, base32
_PART = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")


def app_label(owner: str | None, name: str) -> str | None:
    """The DNS label of the service's app origin (``owner`` None or empty: a declared
    service); None when its name allows none."""
    if _PART.fullmatch(name) is None:
        return None
    if not owner:
        label = name
    elif _PART.fullmatch(owner) is not None and len(name) + 2 + len(owner) <= LABEL_MAX:
        label = f"{name}--{owner}"
    else:
        label = f"{name}---{_digest(owner)}"
    # ``xn--`` and the like (hyphens third and fourth) are reserved for IDNA: never one.
    return None if label[2:4] == "--" or len(label) > LABEL_MAX else label


def _digest(user: str) -> str:
    raw = hashlib.sha256(user.encode()).digest()
    return base64.b32encode(raw).decode().lower()[:DIGEST_CHARS]


def host_label(host: str, domain: str) -> str | None:
    """The app label a ``Host`` header names under ``domain``: None if it is not under it
    (a request for the gateway itself), ``""`` if it is but names no app (the domain
    itself, or a name deeper than one label)."""
    name = host.strip().lower()
    if not name.endswith("]"):  # an IPv6 literal is never an app's name
        name = name.rpartition(":")[0] if ":" in name else name
    name = name.removesuffix(".")
    if name == domain:
        return ""
    if not name.endswith("." + domain):
        return None
    label = name[: -len(domain) - 1]
    return label if "." not in label else ""


def app_origin(scheme: str, label: str, domain: str, port: int | None) -> str:
    """The app's origin, on the port the gateway was reached on."""
    default = {"http": 80, "https": 443}.get(scheme)
    shown = f":{port}" if port is not None and port != default else ""
    return f"{scheme}://{label}.{domain}{shown}"


def cookie_name(secure: bool) -> str:
    return SECURE_COOKIE if secure else COOKIE


@dataclass(frozen=True)
class Pass:
    """What a ticket carries, and the grant it becomes: whose session, which service (its
    owner, ``""`` for a declared one), on which label, where the app starts, until when."""

    session_id: str = field(repr=False)
    user: str
    owner: str
    name: str
    label: str
    start: str
    expires: float


def _key(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


class Passes:
    """One-time tickets and the grants their cookies name, by the digest of their secret
    (a lookup reveals nothing by timing), in this process (a restart ends them, as it ends
    the sessions)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._tickets: dict[str, Pass] = {}
        self._grants: dict[str, Pass] = {}

    def ticket(
        self, session_id: str, user: str, owner: str, name: str, label: str, start: str
    ) -> str:
        """A new ticket, good once for :data:`TICKET_SECONDS`."""
        expires = self._clock() + TICKET_SECONDS
        return self._add(self._tickets, Pass(session_id, user, owner, name, label, start, expires))

    def redeem(self, ticket: str, label: str) -> tuple[str, Pass] | None:
        """The ticket's grant and the secret its cookie carries; None for a ticket used,
        expired, unknown or for another app (used up all the same)."""
        if not ticket or len(ticket) > SECRET_MAX:
            return None
        used = self._tickets.pop(_key(ticket), None)
        if used is None or used.label != label or used.expires <= self._clock():
            return None
        grant = replace(used, expires=self._clock() + GRANT_SECONDS)
        return self._add(self._grants, grant), grant

    def grant(self, secret: str, label: str) -> Pass | None:
        """The live grant a cookie names, if it is this app's."""
        if not secret or len(secret) > SECRET_MAX:
            return None
        key = _key(secret)
        found = self._grants.get(key)
        if found is not None and found.expires <= self._clock():
            del self._grants[key]
            return None
        return found if found is not None and found.label == label else None

    def end(self, secret: str) -> None:
        self._grants.pop(_key(secret), None)

    def _add(self, store: dict[str, Pass], entry: Pass) -> str:
        now = self._clock()
        for key in [k for k, v in store.items() if v.expires <= now]:
            del store[key]
        while len(store) >= PASSES_MAX:
            del store[next(iter(store))]  # the oldest (dicts keep their order)
        secret = secrets.token_urlsafe(32)
        store[_key(secret)] = entry
        return secret
