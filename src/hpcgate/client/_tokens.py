"""The SDK's tokens methods: list, create and revoke API tokens (the caller's own; an
admin's for anyone)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta
from typing import Any

from hpcgate.client._async import AsyncCore
from hpcgate.client._base import Call, given, request
from hpcgate.client._sync import SyncCore
from hpcgate.model.principal import Scope
from hpcgate.model.tokens import CreatedToken, TokenInfo


def tokens_call(user: str | None) -> Call:
    return request("GET", "tokens", params={"user": user} if user else None)


def create_call(
    scopes: Iterable[Scope | str] | None,
    expires_in: float | timedelta | None,
    description: str | None,
    user: str | None,
) -> Call:
    """The request for a new token, with only the fields given (the gateway's defaults:
    the caller, the default scopes, no expiry)."""
    if isinstance(expires_in, timedelta):
        expires_in = expires_in.total_seconds()
    body: dict[str, Any] = {
        "scopes": None if scopes is None else [Scope(s).value for s in scopes],
        "expires_in": None if expires_in is None else int(expires_in),
        "description": description,
        "user": user,
    }
    return request("POST", "tokens", json=given(body))


def key_call(
    functions: str | Iterable[str],
    per_minute: int | None,
    concurrent: int | None,
    expires_in: float | timedelta | None,
    description: str | None,
) -> Call:
    """The request for a new API key for ``functions`` (a name or several), with its limits."""
    names = [functions] if isinstance(functions, str) else list(functions)
    if isinstance(expires_in, timedelta):
        expires_in = expires_in.total_seconds()
    limits = given({"per_minute": per_minute, "concurrent": concurrent})
    body: dict[str, Any] = {
        "functions": names,
        "limits": limits or None,
        "expires_in": None if expires_in is None else int(expires_in),
        "description": description,
    }
    return request("POST", "tokens", json=given(body))


def keys_of(tokens: list[TokenInfo], function: str | None) -> list[TokenInfo]:
    """The API keys among ``tokens`` (those for ``function`` only, if given)."""
    keys = [t for t in tokens if t.functions is not None]
    return keys if function is None else [t for t in keys if function in (t.functions or [])]


def revoke_call(token_id: str) -> Call:
    return request("DELETE", "tokens", token_id)


class SyncTokens(SyncCore):
    """Tokens methods of :class:`~hpcgate.Client`."""

    def tokens(self, *, user: str | None = None) -> list[TokenInfo]:
        """The caller's tokens, never their secrets (an admin: ``user``'s, or everyone's)."""
        return self._call(tokens_call(user), list[TokenInfo])

    def create_token(
        self,
        *,
        scopes: Iterable[Scope | str] | None = None,
        expires_in: float | timedelta | None = None,
        description: str | None = None,
        user: str | None = None,
    ) -> CreatedToken:
        """A new token: ``scopes`` (default jobs and files, read and write, as far as the
        caller holds them) at most the caller's own, lasting ``expires_in`` seconds, never
        longer than the caller's token (default: as long as the caller's token). Only an
        admin may name another ``user``. Revoking the caller's token revokes this one too.
        Its secret, ``.token``, is shown only this once."""
        return self._call(create_call(scopes, expires_in, description, user), CreatedToken)

    def revoke_token(self, token_id: str) -> None:
        """Revoke the token at once; NotFound for a token the caller may not see."""
        self._send(revoke_call(token_id))


class AsyncTokens(AsyncCore):
    """Tokens methods of :class:`~hpcgate.AsyncClient`."""

    async def tokens(self, *, user: str | None = None) -> list[TokenInfo]:
        """As :meth:`Client.tokens`."""
        return await self._call(tokens_call(user), list[TokenInfo])

    async def create_token(
        self,
        *,
        scopes: Iterable[Scope | str] | None = None,
        expires_in: float | timedelta | None = None,
        description: str | None = None,
        user: str | None = None,
    ) -> CreatedToken:
        """As :meth:`Client.create_token`."""
        return await self._call(create_call(scopes, expires_in, description, user), CreatedToken)

    async def revoke_token(self, token_id: str) -> None:
        """As :meth:`Client.revoke_token`."""
        await self._send(revoke_call(token_id))
