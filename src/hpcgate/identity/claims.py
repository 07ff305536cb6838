"""Verified claims to a :class:`Principal`: who the caller is in hpcgate and what it may do.

A client's own token (client credentials) is a service account: the user ``client:<id>``,
which no person's name can be (user names hold no ``:``), with the scopes its token holds.
Anyone else's token is named by the provider's mapping rules (:mod:`.rules`), or, with
none, by its ``username_claim``; its groups may add scopes and projects. Pure: no I/O.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from hpcgate.config import OidcIssuer
from hpcgate.identity.rules import Rules
from hpcgate.model.errors import Forbidden, Unauthenticated
from hpcgate.model.principal import Principal, Scope
from hpcgate.model.tokens import USER_NAME_PATTERN

_USER = re.compile(USER_NAME_PATTERN)
_CLIENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,62}$")
_SCOPE_NAMES = frozenset(scope.value for scope in Scope)
_LAST_SECOND = 253_402_300_799  # 9999-12-31T23:59:59Z, the last a datetime holds
SERVICE_ACCOUNT_PREFIX = "client:"


def user(claims: dict[str, Any], config: OidcIssuer) -> str:
    """The hpcgate user a token names in its ``username_claim``."""
    name = claims.get(config.username_claim)
    if not isinstance(name, str) or not _USER.fullmatch(name):
        raise Unauthenticated(
            f"the token's {config.username_claim!r} claim is not an hpcgate user name"
        )
    return name


def scopes(claims: dict[str, Any], config: OidcIssuer) -> frozenset[Scope]:
    """The hpcgate scopes a token grants: those its ``scopes_claim`` names (a string of
    space-separated names or a list) that the provider may grant; other names are ignored."""
    value = claims.get(config.scopes_claim)
    names = value.split() if isinstance(value, str) else value
    if not isinstance(names, list):
        return frozenset()
    allowed = frozenset(config.scopes)
    return frozenset(Scope(n) for n in names if n in _SCOPE_NAMES and Scope(n) in allowed)


def client(claims: dict[str, Any], config: OidcIssuer) -> str | None:
    """The OAuth client the token was issued to, if it names one."""
    value = claims.get(config.client_claim)
    return value if isinstance(value, str) and value else None


def is_service_account(claims: dict[str, Any], config: OidcIssuer, client_id: str | None) -> bool:
    """Whether the token is a client's own: it holds the configured marking claim, or
    (RFC 9068, section 2.2) it names a client and no other subject than that client."""
    if config.service_account_claim is not None:
        return config.service_account_claim in claims
    return client_id is not None and claims.get("sub", client_id) == client_id


class Mapping:
    """One provider's way from claims to a principal; its rules are compiled here, once."""

    def __init__(self, config: OidcIssuer) -> None:
        self.config = config
        self.rules = Rules(config)

    def principal(self, claims: dict[str, Any], token_id: str) -> Principal:
        """The caller behind verified ``claims``; ``token_id`` names the token in logs."""
        expires_at = _expiry(claims.get("exp"))
        client_id = client(claims, self.config)
        granted = scopes(claims, self.config)
        if is_service_account(claims, self.config, client_id):
            name = _service_account(client_id, self.config)
            return Principal(name, granted, token_id, expires_at, client=client_id)
        if self.rules.users:
            name, account = self.rules.user(claims)
        else:
            name, account = user(claims, self.config), None
        given = self.rules.groups(claims)
        return Principal(
            name,
            granted | given.scopes,
            token_id,
            expires_at,
            account=account,
            projects=given.projects,
            client=client_id,
            project_roles=given.roles,
        )


def principal(claims: dict[str, Any], config: OidcIssuer, token_id: str) -> Principal:
    """The caller behind ``claims`` (the rules compiled for this one call)."""
    return Mapping(config).principal(claims, token_id)


def _service_account(client_id: str | None, config: OidcIssuer) -> str:
    if not config.service_accounts:
        raise Forbidden("this gateway takes no client's own tokens (service accounts)")
    if client_id is None or not _CLIENT.fullmatch(client_id):
        raise Unauthenticated(f"the token's {config.client_claim!r} claim is not a client id")
    return SERVICE_ACCOUNT_PREFIX + client_id


def _expiry(expires: object) -> datetime | None:
    if isinstance(expires, int | float) and not isinstance(expires, bool):
        return datetime.fromtimestamp(min(max(expires, 0), _LAST_SECOND), UTC)
    return None
