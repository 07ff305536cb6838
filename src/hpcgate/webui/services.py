"""Services: the caller's own and the declared ones they may use, then those of each of
its projects (``PROJECT~NAME``); start one from a form, watch its replicas start (htmx
polls their rows), open it in a new tab, stop it; as ``/api/v1/services`` does for the
same caller, with the same checks of its role in a project."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import unquote_to_bytes

from fastapi import APIRouter, Path, Request
from fastapi.responses import RedirectResponse, Response, StreamingResponse
from pydantic import ValidationError

from hpcgate.model.errors import HpcgateError, NotFound
from hpcgate.model.principal import Principal, Role
from hpcgate.model.services import QUALIFIED_PATTERN, Service, ServiceCreate, qualified_name
from hpcgate.relaying import proxied
from hpcgate.services.proxy import Answer
from hpcgate.services.replicas import public_prefix
from hpcgate.services.service import ServiceManager
from hpcgate.webui.apporigins import ENTER, Passes, app_label, app_origin
from hpcgate.webui.forms import Form, read_form
from hpcgate.webui.headers import FORM_ACTION_HEADER
from hpcgate.webui.projectlists import may_use, sections
from hpcgate.webui.render import page
from hpcgate.webui.viewer import Viewer, ViewerDep, session_id, ui_gateway

router = APIRouter(prefix="/services")
#: A service's own pages, apart from /ui/services/... (no service name can clash).
opened = APIRouter(prefix="/open")
OPEN = opened.prefix
ServiceName = Annotated[str, Path(pattern=r"^[a-z][a-z0-9-]{0,39}$")]
#: A service's name as its pages take it: ``PROJECT~NAME`` for a project's.
ServiceRef = Annotated[str, Path(pattern=QUALIFIED_PATTERN)]
DEFAULT_SCRIPT = '#!/bin/sh\nexec python3 -m http.server "$HPCGATE_SERVICE_PORT"\n'
#: The form's fields copied into the spec as they are (when given).
FIELDS = (
    "name",
    "system",
    "script",
    "min_replicas",
    "max_replicas",
    "time_limit",
    "health_path",
    "project",
)
SHOWN = (*FIELDS, "models")
STOP_POLLING = 286  # htmx swaps this answer in and polls no more
#: What the browser's request passes on to the replica: never its cookies (the session).
REQUEST_HEADERS = frozenset(
    {b"accept", b"accept-language", b"if-none-match", b"if-modified-since", b"range"}
)
#: What the replica's answer passes on: never a cookie (it would land on /ui's path).
ANSWER_HEADERS = frozenset(
    {b"content-type", b"content-length", b"content-range", b"etag", b"last-modified"}
)


@router.get("")
async def list_services(request: Request, viewer: ViewerDep) -> Response:
    return await _page(request, viewer, _defaults(), [])


def passes(request: Request) -> Passes:
    return request.app.state.passes  # type: ignore[no-any-return]


def _defaults() -> dict[str, str]:
    return {"script": DEFAULT_SCRIPT, "min_replicas": "1", "max_replicas": "1"}


async def _page(
    request: Request, viewer: Viewer, values: dict[str, str], errors: list[str], status: int = 200
) -> Response:
    services = viewer.gateway.services
    projects = await sections(viewer, services.list)
    return page(
        request,
        "services.html",
        viewer.session,
        status_code=status,
        services=await services.list(viewer.who),
        projects=projects,
        creatable=[section.project for section in projects if section.uses],
        values=values,
        errors=errors,
        systems=[cluster.name for cluster in viewer.gateway.systems],
    )


def _spec(form: Form) -> ServiceCreate:
    fields: dict[str, object] = {}
    for key in FIELDS:
        if (value := form.given(key)) is not None:
            fields[key] = value.replace("\r\n", "\n") if key == "script" else value
    fields["models"] = form.get("models").replace(",", " ").split()
    return ServiceCreate.model_validate(fields)


@router.post("")
async def start(request: Request, viewer: ViewerDep) -> Response:
    """A service of the caller's own (or of a project it names), as POST
    /api/v1/services starts it."""
    form = await read_form(request)
    values = {key: form.get(key) for key in SHOWN}
    try:
        spec = _spec(form)
    except ValidationError as exc:
        errors = [f"{'.'.join(map(str, e['loc'])) or 'form'}: {e['msg']}" for e in exc.errors()]
        return await _page(request, viewer, values, errors, status=422)
    try:
        created = await viewer.gateway.services.create(viewer.who, spec)
    except HpcgateError as exc:
        return await _page(request, viewer, values, [exc.detail], status=exc.status)
    where = qualified_name(created.project, created.name)
    return RedirectResponse(f"/ui/services/{where}", status_code=303)


@router.get("/{name}")
async def service_page(request: Request, viewer: ViewerDep, name: ServiceRef) -> Response:
    service = await viewer.gateway.services.get(viewer.who, name)
    app = _app(request, service)
    origin = app[1] if app else None
    uses, stops = await _controls(viewer.gateway.services, viewer.who, service)
    answer = page(
        request,
        "service.html",
        viewer.session,
        ref=name,
        service=service,
        app_origin=origin,
        uses=uses,
        stops=stops,
    )
    if origin is not None:  # the Open form's answer redirects there
        answer.headers[FORM_ACTION_HEADER] = origin
    return answer


async def _controls(
    services: ServiceManager, who: Principal, service: Service
) -> tuple[bool, bool]:
    """Whether the page offers to use the service (open it) and to stop it: a project's
    to a member or an owner, stopped by an owner or the member who made it, as the
    services layer checks again when it is done."""
    if service.project is None:
        return True, bool(service.owner) and not service.stopping
    role = await services.project_role(who, service.project)
    mine = role is Role.OWNER or service.owner == who.user
    return may_use(role), may_use(role) and mine and not service.stopping


def _app(request: Request, service: Service) -> tuple[str, str] | None:
    """The label and origin of the service's own origin under ``[ui] apps_domain``; None
    without one, and for a project's (its pages are opened here, sandboxed)."""
    domain = ui_gateway(request).settings.ui.apps_domain
    if service.project is not None:
        return None
    owner, name = service.owner, service.name
    label = app_label(owner, name) if domain else None
    if domain is None or label is None:
        return None
    return label, app_origin(request.url.scheme, label, domain, request.url.port)


@router.post("/{name}/open")
async def open_app(request: Request, viewer: ViewerDep, name: ServiceRef) -> Response:
    """Into the service's own origin with a one-time ticket for this session, user and
    service (:mod:`hpcgate.webui.apporigins`); without one, its sandboxed pages here."""
    service = await viewer.gateway.services.get(viewer.who, name)
    app = _app(request, service)
    if app is None:
        return RedirectResponse(f"/ui{OPEN}/{name}/", status_code=303)
    label, origin = app
    start = public_prefix(name) if service.spec.keep_prefix else "/"
    presented = session_id(request) or ""
    owner = service.owner or ""
    ticket = passes(request).ticket(presented, viewer.who.user, owner, name, label, start)
    return RedirectResponse(f"{origin}{ENTER}?ticket={ticket}", status_code=303)


@router.get("/{name}/replicas")
async def replicas(request: Request, viewer: ViewerDep, name: ServiceRef) -> Response:
    """The replicas' rows alone, which the service's page polls while it is shown; once
    the service is gone, a last answer that ends the polling (htmx's 286)."""
    try:
        service = await viewer.gateway.services.get(viewer.who, name)
    except NotFound:
        return page(request, "service_gone.html", viewer.session, status_code=STOP_POLLING)
    return page(request, "service_replicas.html", viewer.session, service=service)


@router.post("/{name}/stop")
async def stop(request: Request, viewer: ViewerDep, name: ServiceRef) -> Response:
    """Stopped as DELETE /api/v1/services/{name} stops it: its replicas drain."""
    await viewer.gateway.services.delete(viewer.who, name)
    return RedirectResponse(f"/ui/services/{name}", status_code=303)


@opened.get("/{name}")
async def open_root(request: Request, viewer: ViewerDep, name: ServiceRef) -> Response:
    return RedirectResponse(f"/ui{OPEN}/{name}/", status_code=307)


@opened.get("/{name}/{path:path}")
async def open_service(
    request: Request, viewer: ViewerDep, name: ServiceRef, path: str
) -> Response:
    """The service's page through the proxy, for a browser tab (GET only). Its answer is
    sandboxed (:mod:`hpcgate.webui.headers`): no script of the service's runs as this
    gateway's origin, and no cookie passes either way."""
    route, spec = await viewer.gateway.services.route(viewer.who, name)
    answer = await viewer.gateway.services.proxy.forward(
        route,
        "GET",
        _target(request, name, keep_prefix=spec.keep_prefix),
        [(k, v) for k, v in request.headers.raw if k in REQUEST_HEADERS],
        b"",
        float(spec.request_timeout),
    )
    return streamed(answer)


def _target(request: Request, name: str, *, keep_prefix: bool) -> bytes:
    """The path and query the replica gets: what follows ``/open/{name}``, under the
    service's public prefix when it keeps it (it serves there)."""
    raw: bytes = request.scope.get("raw_path") or request.scope["path"].encode()
    head = f"/ui{OPEN}/".encode()
    # the name's segment as the browser sent it (``p%7Eweb`` for ``p~web`` too)
    segment, slash, rest = raw.removeprefix(head).partition(b"/")
    named = raw.startswith(head) and unquote_to_bytes(segment) == name.encode()
    path = slash + rest if named else b"/"
    if keep_prefix:
        path = public_prefix(name).rstrip("/").encode() + path
    query: bytes = request.scope.get("query_string", b"")
    return (path or b"/") + (b"?" + query if query else b"")


def streamed(answer: Answer) -> StreamingResponse:
    """The replica's answer with the headers a page of the gateway's passes on."""
    return proxied(answer, [(k, v) for k, v in answer.headers if k in ANSWER_HEADERS])
