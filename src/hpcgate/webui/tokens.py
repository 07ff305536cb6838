"""Tokens: create one (scopes, lifetime, description, limits to one system, project or
service or to reading; its secret shown once), list them,
revoke one, as ``/api/v1/tokens`` does for the same caller; and the caller's consent requests
waiting for a decision (:mod:`hpcgate.webui.consents`).

A new token holding a scope of ``[consent] token_scopes`` is held here as through the API:
its secret is shown, and it is refused until approved with another credential of its user
(not this session's: it asked)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Request
from fastapi.responses import Response
from pydantic import ValidationError

from hpcgate.model.consents import ConsentPending, ConsentRequest
from hpcgate.model.errors import BadRequest, Forbidden, NotFound
from hpcgate.model.principal import Scope
from hpcgate.model.tokens import CreatedToken, NewToken
from hpcgate.webui.consents import pending
from hpcgate.webui.forms import Form, read_form
from hpcgate.webui.render import page
from hpcgate.webui.viewer import Viewer, ViewerDep

router = APIRouter(prefix="/tokens")
TokenId = Annotated[str, Path(pattern=r"^[0-9a-f]{12}$")]
#: The lifetimes offered, in seconds ("" : as long as the signed-in token).
LIFETIMES = {"": "As long as mine", "3600": "1 hour", "86400": "1 day", "2592000": "30 days"}
GRANTABLE = [s for s in Scope if s != Scope.AGENT_SERVE]


async def _page(
    request: Request,
    viewer: Viewer,
    created: CreatedToken | None = None,
    held: ConsentRequest | None = None,
    errors: list[str] | None = None,
    status: int = 200,
) -> Response:
    tokens = await viewer.gateway.tokens.infos(viewer.who.user)
    return page(
        request,
        "tokens.html",
        viewer.session,
        status_code=status,
        tokens=sorted(tokens, key=lambda t: t.created_at, reverse=True),
        created=created,
        held=held,
        consents=await pending(viewer),
        errors=errors or [],
        scopes=GRANTABLE,
        lifetimes=LIFETIMES,
        systems=[cluster.name for cluster in viewer.gateway.systems],
        current=viewer.who.token_id,
    )


@router.get("")
async def tokens_page(request: Request, viewer: ViewerDep) -> Response:
    return await _page(request, viewer)


def _new_token(form: Form) -> NewToken:
    fields: dict[str, object] = {
        "scopes": form.all("scopes"),
        "description": form.get("description"),
    }
    if (lifetime := form.given("expires_in")) is not None:
        fields["expires_in"] = lifetime
    for limit in ("system", "project", "service"):  # left empty: no such limit
        if value := form.get(limit).strip():
            fields[limit] = value
    fields["read_only"] = form.get("read_only") == "yes"
    return NewToken.model_validate(fields)


@router.post("")
async def create(request: Request, viewer: ViewerDep) -> Response:
    """The new token holds at most the signed-in token's scopes and lifetime (as the API)."""
    form = await read_form(request)
    try:
        wanted = _new_token(form)
    except ValidationError as exc:
        errors = [f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()]
        return await _page(request, viewer, errors=errors, status=422)
    try:
        created = await viewer.gateway.tokens.issue(viewer.who, wanted)
    except (BadRequest, Forbidden, NotFound) as exc:  # a limit it may not have: say why
        return await _page(request, viewer, errors=[exc.detail], status=exc.status)
    try:
        await viewer.gateway.consents.check_new_token(viewer.who, created)
    except ConsentPending as exc:
        held = exc.answer.consent
        return await _page(request, viewer, created=created, held=held, status=202)
    return await _page(request, viewer, created=created, status=201)


@router.post("/{token_id}/revoke")
async def revoke(request: Request, viewer: ViewerDep, token_id: TokenId) -> Response:
    """Revokes it and every token it issued; another user's is not found (an admin: any)."""
    row = await viewer.gateway.tokens.get(token_id)
    if row is None or (row.user != viewer.who.user and not viewer.who.has(Scope.ADMIN)):
        raise NotFound(f"no token {token_id!r}")
    await viewer.gateway.tokens.revoke(token_id)
    return await _page(request, viewer)
