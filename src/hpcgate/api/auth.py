"""The bearer-token dependency that turns a request into a :class:`Principal`."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Path, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from hpcgate.gateway import Gateway
from hpcgate.model.errors import Unauthenticated
from hpcgate.model.principal import Principal
from hpcgate.target import Target

_bearer = HTTPBearer(
    auto_error=False,
    description="An hpcgate API token, or an access token of a trusted OpenID provider",
)


async def gateway(request: Request) -> Gateway:
    # async on purpose: FastAPI would run a plain function in a worker thread per request
    return request.app.state.gateway  # type: ignore[no-any-return]


Bearer = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]


async def principal(request: Request, credentials: Bearer) -> Principal:
    if credentials is None:
        raise Unauthenticated("send 'Authorization: Bearer <token>'")
    return await (await gateway(request)).authenticate(credentials.credentials)


Caller = Annotated[Principal, Depends(principal)]
GatewayDep = Annotated[Gateway, Depends(gateway)]


SystemName = Annotated[str, Path(max_length=64, description="A configured system")]


async def target(request: Request, credentials: Bearer, system: SystemName) -> Target:
    """The caller on the route's ``{system}``: resolved once, handed to the services.

    It calls :func:`principal` itself rather than depending on it: each nested dependency
    costs FastAPI a resolution step on every request."""
    who = await principal(request, credentials)
    return (await gateway(request)).target(who, system)


TargetDep = Annotated[Target, Depends(target)]
