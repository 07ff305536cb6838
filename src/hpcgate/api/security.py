"""The OpenAPI document's security schemes: hpcgate's bearer tokens, and one
``openIdConnect`` scheme per trusted provider of ``[auth.oidc]``, each an alternative
wherever a bearer token is asked for (a provider's access token is sent the same way)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI

from hpcgate.config import OidcIssuer

BEARER = "HTTPBearer"  # the name FastAPI gives auth.py's HTTPBearer scheme
#: The requirement met by sending nothing: in an operation's ``security`` beside a scheme,
#: a token is optional there (``GET /api/v1/health``: it only adds to the answer).
OPTIONAL: dict[str, list[str]] = {}


def scheme(name: str) -> str:
    return f"oidc-{name}"


def needs_token(operation: Mapping[str, Any]) -> bool:
    """Whether the operation refuses a request without a token (401): it names a scheme,
    and not :data:`OPTIONAL` beside it."""
    security = operation.get("security") or []
    return bool(security) and OPTIONAL not in security


def install(app: FastAPI, issuers: Mapping[str, OidcIssuer]) -> None:
    """Declare ``issuers`` in ``app``'s document, once, when it is first built."""
    if not issuers:
        return
    build = app.openapi

    def document() -> dict[str, Any]:
        fresh = app.openapi_schema is None
        schema = build()
        if fresh:
            _declare(schema, issuers)
        return schema

    app.openapi = document  # type: ignore[method-assign]


def _declare(schema: dict[str, Any], issuers: Mapping[str, OidcIssuer]) -> None:
    schemes = schema.setdefault("components", {}).setdefault("securitySchemes", {})
    for name, config in issuers.items():
        schemes[scheme(name)] = {
            "type": "openIdConnect",
            "openIdConnectUrl": config.issuer.rstrip("/") + "/.well-known/openid-configuration",
            "description": f"An access token of {config.issuer} for audience"
            f" '{config.audience}', sent as 'Authorization: Bearer <token>'",
        }
    for item in schema.get("paths", {}).values():
        for operation in item.values():
            security = operation.get("security")
            if isinstance(security, list) and {BEARER: []} in security:
                security.extend({scheme(name): []} for name in issuers)
