"""A provider's metadata from ``/.well-known/openid-configuration`` (OpenID Discovery 1.0)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx

from hpcgate.model.errors import Unavailable

MAX_DOCUMENT_BYTES = 256 * 1024  # a discovery document or a JWKS; real ones are a few KiB


@dataclass(frozen=True, slots=True)
class Metadata:
    """What hpcgate uses of a provider's discovery document."""

    issuer: str
    jwks_uri: str
    introspection_endpoint: str | None
    #: The authorization code flow's endpoints (the web interface's sign-in); None: absent
    #: or not a URL of the issuer's scheme.
    authorization_endpoint: str | None = None
    token_endpoint: str | None = None
    revocation_endpoint: str | None = None


async def fetch_json(http: httpx.AsyncClient, url: str, what: str) -> dict[str, Any]:
    """A JSON object from ``url``; Unavailable (which says ``what``) for anything else."""
    try:
        response = await http.get(url, headers={"Accept": "application/json"})
        response.raise_for_status()
        if len(response.content) > MAX_DOCUMENT_BYTES:
            raise ValueError(f"larger than {MAX_DOCUMENT_BYTES} bytes")
        document = response.json()
    except (httpx.HTTPError, ValueError) as exc:
        raise Unavailable(f"{what} cannot be read from {url}: {exc}") from None
    if not isinstance(document, dict):
        raise Unavailable(f"{what} at {url} is not a JSON object")
    return document


async def discover(http: httpx.AsyncClient, issuer: str) -> Metadata:
    """The metadata of ``issuer``, whose document must name exactly that issuer."""
    url = issuer.rstrip("/") + "/.well-known/openid-configuration"
    document = await fetch_json(http, url, "the provider's discovery document")
    if document.get("issuer") != issuer:
        raise Unavailable(f"the discovery document at {url} names another issuer")
    jwks_uri = document.get("jwks_uri")
    secure = ("https://",) if issuer.startswith("https://") else ("https://", "http://")
    if not isinstance(jwks_uri, str) or not jwks_uri.startswith(secure):
        raise Unavailable(f"the discovery document at {url} has no usable jwks_uri")
    endpoint = document.get("introspection_endpoint")
    return Metadata(
        issuer,
        jwks_uri,
        endpoint if isinstance(endpoint, str) else None,
        _url(document, "authorization_endpoint", secure),
        _url(document, "token_endpoint", secure),
        _url(document, "revocation_endpoint", secure),
    )


def _url(document: dict[str, Any], name: str, secure: tuple[str, ...]) -> str | None:
    value = document.get(name)
    return value if isinstance(value, str) and value.startswith(secure) else None
