"""The bearer-token dependencies that turn a request into a :class:`Principal`.

:data:`Caller` and :data:`TargetDep` refuse API keys (403); :data:`KeyCaller`, for the routes
a key may use (its functions and their invocations), takes them. Each request is counted
once (:func:`admit`) against its key's requests per minute and its user's
(``[rate_limits]``), and one that asks for a stream takes one of its user's streams until
its answer ends: a 429 past any of them. The quotas left go in the answer's RateLimit
fields (:class:`RateLimitFields`), which also gives the stream back.

A limited token's limits are checked here for every route at once (:func:`within_limits`):
a read-only token may only read, and a token limited to a system or a project may only use
the routes that know systems and projects; the services below check which system and which
project (:meth:`Principal.sees_system`, :meth:`Principal.sees_project`).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Path, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.types import ASGIApp, Message, Receive, Send
from starlette.types import Scope as AsgiScope

from hpcgate.gateway import Gateway
from hpcgate.model.errors import Forbidden, Unauthenticated
from hpcgate.model.principal import Principal
from hpcgate.ratelimits import Quota, fields
from hpcgate.services.openai import Call
from hpcgate.target import Target

_bearer = HTTPBearer(
    auto_error=False,
    description="An hpcgate API token or API key, or a trusted OpenID provider's access token",
)
#: Where a request's quotas wait for its answer (in the ASGI scope's state).
QUOTAS = "hpcgate_quotas"
#: The user whose stream the request holds, given back when its answer ends.
STREAM = "hpcgate_stream"
COUNTED = "hpcgate_counted"
SSE = b"text/event-stream"
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
    gw = await gateway(request)
    who = noted(request.scope, await gw.authenticate(credentials.credentials))
    within_limits(request.scope, who)
    admit(request.scope, gw, who)
    return who


async def key_principal(request: Request, credentials: Bearer) -> Principal:
    """As :func:`principal`, an API key included, whose request counts against its limit."""
    if credentials is None:
        raise Unauthenticated("send 'Authorization: Bearer <token>'")
    gw = await gateway(request)
    who = noted(request.scope, await gw.authenticate(credentials.credentials, keys=True))
    within_limits(request.scope, who)
    admit(request.scope, gw, who)
    return who


#: The methods a read-only token may use.
READING = frozenset({"GET", "HEAD", "OPTIONS"})
#: The routes a token limited to a system or a project may use (each checks which one).
_SYSTEMS, _PROJECTS, _TOKENS, _TASKS, _SERVICES, _FUNCTIONS = (
    "/api/v1/systems",
    "/api/v1/projects",
    "/api/v1/tokens",
    "/api/v1/tasks",
    "/api/v1/services",
    "/api/v1/functions",
)


def within_limits(scope: AsgiScope, who: Principal) -> None:
    """Forbidden for a request its token's limits do not allow: any write by a read-only
    token; for a token limited to a system or a project, any route that is not the
    systems' (for a project: but their jobs and files, which check the project), the
    projects', the tokens' or the tasks' (not for a project: they are the user's); a
    token limited to a project also uses the services', the functions' and ``/v1`` (which
    show it only the project's)."""
    limit = who.restriction
    if limit is None:
        return
    method = scope.get("method", "WEBSOCKET")  # a WebSocket may write: no reading method
    if limit.read_only and method not in READING:
        raise Forbidden("this token is read-only")
    if limit.service is not None:
        if not _service_may_use(scope["path"], method, limit.service):
            raise Forbidden(f"this token is limited to service {limit.service!r}")
        return
    if limit.system is None and limit.project is None:
        return
    if not _limited_may_use(scope["path"], limit.project is not None):
        what = f"project {limit.project!r}" if limit.project else f"system {limit.system!r}"
        raise Forbidden(f"this token is limited to {what}: this route is not open to it")


def _limited_may_use(path: str, to_project: bool) -> bool:
    if _under(path, _PROJECTS) or _under(path, _TOKENS):
        return True
    if _under(path, _SERVICES) or _under(path, _FUNCTIONS) or _under(path, "/v1"):
        return to_project
    if _under(path, _TASKS):
        return not to_project
    if not _under(path, _SYSTEMS):
        return False
    parts = path.split("/")  # '', 'api', 'v1', 'systems', NAME, KIND, ...
    return not to_project or len(parts) <= 5 or parts[5] in ("jobs", "files")


def _service_may_use(path: str, method: str, service: str) -> bool:
    """The service's own routes, the /v1 routes (which offer only its models), the list of
    services (showing it alone) and the tokens'."""
    if _under(path, f"{_SERVICES}/{service}") or _under(path, "/v1") or _under(path, _TOKENS):
        return True
    return path == _SERVICES and method in READING


def _under(path: str, prefix: str) -> bool:
    return path == prefix or path.startswith(prefix + "/")


def admit(scope: AsgiScope, gw: Gateway, who: Principal) -> None:
    """Count the request against its limits, once however often its caller is resolved,
    and take one of its user's streams if it asks for one (:func:`asks_stream`)."""
    state = scope.setdefault("state", {})
    if COUNTED in state:
        return
    state[COUNTED] = True
    quotas = gw.rate_limits.admit(who)
    if quotas:
        state[QUOTAS] = quotas
    if gw.rate_limits.allowance(who.user).concurrent_streams is not None and asks_stream(scope):
        take_stream(scope, gw, who)


def asks_stream(scope: AsgiScope) -> bool:
    """Whether the answer will be a stream held open: asked as Server-Sent Events, an
    events route, or a followed job output. (A streamed ``/v1`` answer is known from its
    body: :func:`take_stream` is called for it there.)"""
    if scope["path"].endswith("/events") or b"follow=true" in scope["query_string"]:
        return True
    for name, value in scope["headers"]:  # noqa: SIM110 (a loop, not any(): no call per header)
        if name == b"accept" and SSE in value:
            return True
    return False


def take_stream(scope: AsgiScope, gw: Gateway, who: Principal) -> None:
    """Hold one of the user's streams until the answer ends (once per request)."""
    state = scope.setdefault("state", {})
    if STREAM in state:
        return
    quota = gw.rate_limits.open_stream(who.user)
    if quota is not None:
        state[STREAM] = who.user
        add_quota(scope, quota)


async def openai_limits(scope: AsgiScope, gw: Gateway, who: Principal, call: Call) -> None:
    """A ``/v1`` call's own limits: its user's LLM tokens of the day, and a stream held if
    it asked for one."""
    if gw.openai.quota is not None:
        add_quota(scope, await gw.openai.quota.admit(who))
    if call.stream and gw.rate_limits.allowance(who.user).concurrent_streams is not None:
        take_stream(scope, gw, who)


def add_quota(scope: AsgiScope, quota: Quota | None) -> None:
    """One more quota for the answer's RateLimit fields."""
    if quota is not None:
        state = scope.setdefault("state", {})
        state[QUOTAS] = [*state.get(QUOTAS, ()), quota]


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
    """Adds the RateLimit fields of a request's quotas (set by :func:`admit`) to its answer,
    whatever the route answers with (a model, a stream, a problem document), unless the
    answer has its own (a refusal says which limit it was); when the answer has ended, gives
    back the stream the request held."""

    def __init__(self, app: ASGIApp, gateway: Gateway) -> None:
        self.app = app
        self._limits = gateway.rate_limits

    async def __call__(self, scope: AsgiScope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_fields(message: Message) -> None:
            quotas = scope.get("state", {}).get(QUOTAS)
            if message["type"] == "http.response.start" and quotas:
                message = {**message, "headers": _with_fields(message, fields(quotas))}
            await send(message)

        try:
            await self.app(scope, receive, send_with_fields)
        finally:
            if (user := scope.get("state", {}).pop(STREAM, None)) is not None:
                self._limits.close_stream(user)


def _with_fields(message: Message, fields: dict[str, str]) -> list[tuple[bytes, bytes]]:
    headers: list[tuple[bytes, bytes]] = list(message.get("headers", []))
    present = {name.lower() for name, _ in headers}
    added = [(k.lower().encode(), v.encode()) for k, v in fields.items()]
    return headers + [(name, value) for name, value in added if name not in present]
