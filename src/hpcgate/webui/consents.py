"""Consent requests on the tokens page: the signed-in user's pending ones listed, each
opened on a page of its own to approve or deny it, as ``/api/v1/consents`` does.

The web session's own credential decides, with the checks of :mod:`hpcgate.consent` (not
the credential held, nor the one that asked, nor one issued from it: 403)."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Path, Request
from fastapi.responses import RedirectResponse, Response

from hpcgate.consent import LIST_MAX
from hpcgate.model.consents import CONSENT_ID_PATTERN, ConsentRequest, ConsentState
from hpcgate.webui.render import page
from hpcgate.webui.viewer import Viewer, ViewerDep

router = APIRouter(prefix="/tokens/consents")
ConsentId = Annotated[str, Path(pattern=CONSENT_ID_PATTERN)]


async def pending(viewer: Viewer) -> list[ConsentRequest]:
    """The viewer's requests waiting for a decision, newest first."""
    return await viewer.gateway.consents.list(viewer.who, ConsentState.PENDING, LIST_MAX)


@router.get("/{consent_id}")
async def consent_page(request: Request, viewer: ViewerDep, consent_id: ConsentId) -> Response:
    """One request (another user's: 404), with its approve and deny buttons: the
    confirmation before deciding."""
    consent = await viewer.gateway.consents.get(viewer.who, consent_id)
    return page(request, "consent.html", viewer.session, consent=consent)


@router.post("/{consent_id}/{decision}")
async def decide(
    viewer: ViewerDep, consent_id: ConsentId, decision: Literal["approve", "deny"]
) -> Response:
    """Decides with the session's credential, then back to the tokens page (a denied
    token is revoked)."""
    await viewer.gateway.consents.decide(viewer.who, consent_id, approve=decision == "approve")
    return RedirectResponse("/ui/tokens", status_code=303)
