"""Verified claims to a :class:`Principal`: who the caller is in hpcgate and what it may do.

Kept small and pure so that the mapping rules of a later step (claim value maps, regular
expressions, groups granting projects) extend :func:`principal` without touching the
token checks.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from hpcgate.config import OidcIssuer
from hpcgate.model.errors import Unauthenticated
from hpcgate.model.principal import Principal, Scope
from hpcgate.model.tokens import USER_NAME_PATTERN

_USER = re.compile(USER_NAME_PATTERN)
_SCOPE_NAMES = frozenset(scope.value for scope in Scope)
_LAST_SECOND = 253_402_300_799  # 9999-12-31T23:59:59Z, the last a datetime holds


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


def principal(claims: dict[str, Any], config: OidcIssuer, token_id: str) -> Principal:
    """The caller behind verified ``claims``; ``token_id`` names the token in logs."""
    expires = claims.get("exp")
    expires_at = None
    if isinstance(expires, int | float) and not isinstance(expires, bool):
        expires_at = datetime.fromtimestamp(min(max(expires, 0), _LAST_SECOND), UTC)
    return Principal(user(claims, config), scopes(claims, config), token_id, expires_at)
