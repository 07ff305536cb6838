"""The bearer-token dependencies that turn a request into a :class:`Principal`.

:data:`Caller` and :data:`TargetDep` refuse API keys (403); :data:`KeyCaller`, for the routes
a key may use (its functions and their invocations), takes them, and counts each of a key's
requests against its requests per minute (a 429 past them). The quota left goes in the
answer's RateLimit fields (:class:`RateLimitFields`).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Path, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.types import ASGIApp, Message, Receive, Send
from starlette.types import Scope as AsgiScope

from hpcgate.gateway import Gateway
from hpcgate.model.errors import Unauthenticated
from hpcgate.model.principal import Principal
from hpcgate.target import Target

_bearer = HTTPBearer(
    auto_error=False,
    description="An hpcgate API token or API key, or a trusted OpenID provider's access token",
)
#: Where a request's quota waits for its answer (in the ASGI scope's state).
QUOTA = "hpcgate_quota"
#: Where the request's caller waits for the audit log (in the ASGI scope's state).
CALLER = "hpcgate_caller"


def noted(scope: AsgiScope, who: Principal) -> Principal:
    """``who``, remembered as the request's caller for the audit log."""
    scope.setdefault("state", {})[CALLER] = who
    return who


async def gateway(request: Request) -> Gateway:
    # async on purpose: FastAPI would run a plain function in a worker thread per request
    return request.app.state.gateway  # type: ignore[no-any-return]


Bearer = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]


async def principal(request: Request, credentials: Bearer) -> Principal:
    if credentials is None:
        raise Unauthenticated("send 'Authorization: Bearer <token>'")
    return noted(
        request.scope, await (await gateway(request)).authenticate(credentials.credentials)
    )


async def key_principal(request: Request, credentials: Bearer) -> Principal:
    """As :func:`principal`, an API key included, whose request counts against its limit."""
    if credentials is None:
        raise Unauthenticated("send 'Authorization: Bearer <token>'")
    gw = await gateway(request)
    who = noted(request.scope, await gw.authenticate(credentials.credentials, keys=True))
    quota = gw.rate_limits.admit(who)
    if quota is not None:
        request.scope.setdefault("state", {})[QUOTA] = quota
    return who


Caller = Annotated[Principal, Depends(principal)]
#: The caller on a route an API key may use.
KeyCaller = Annotated[Principal, Depends(key_principal)]
GatewayDep = Annotated[Gateway, Depends(gateway)]


SystemName = Annotated[str, Path(max_length=64, description="A configured system")]


async def target(request: Request, credentials: Bearer, system: SystemName) -> Target:
    """The caller on the route's ``{system}``: resolved once, handed to the services.

    It calls :func:`principal` itself rather than depending on it: each nested dependency
    costs FastAPI a resolution step on every request."""
    who = await principal(request, credentials)
    return (await gateway(request)).target(who, system)


TargetDep = Annotated[Target, Depends(target)]


class RateLimitFields:
    """Adds the RateLimit fields of a request's quota (set by :func:`key_principal`) to its
    answer, whatever the route answers with (a model, a stream, a problem document), unless
    the answer has its own (a refusal by another limit says which one it was)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: AsgiScope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_fields(message: Message) -> None:
            quota = scope.get("state", {}).get(QUOTA)
            if message["type"] == "http.response.start" and quota is not None:
                message = {**message, "headers": _with_fields(message, quota.headers())}
            await send(message)

        await self.app(scope, receive, send_with_fields)


def _with_fields(message: Message, fields: dict[str, str]) -> list[tuple[bytes, bytes]]:
    headers: list[tuple[bytes, bytes]] = list(message.get("headers", []))
    present = {name.lower() for name, _ in headers}
    added = [(k.lower().encode(), v.encode()) for k, v in fields.items()]
    return headers + [(name, value) for name, value in added if name not in present]
