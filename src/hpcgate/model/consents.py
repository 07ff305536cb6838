"""Consent requests as clients see them: an action an admin marked as needing its user's
approval out of band (``[consent]``), held until the user approves or denies it with
another credential. Pure models, shared by the API and the SDK.

A held request is answered ``202 Accepted`` with a :class:`ConsentAnswer` (and the header
:data:`CONSENT_HEADER` naming the request); the SDK raises :class:`ConsentPending` for it.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import ClassVar

from pydantic import BaseModel, Field

from hpcgate.model.errors import HpcgateError
from hpcgate.model.principal import Scope
from hpcgate.model.tokens import CreatedToken

#: The header of a held request's 202 answer: the consent request's id.
CONSENT_HEADER = "Hpcgate-Consent"
#: A consent request's id: 16 hex digits.
CONSENT_ID_PATTERN = r"^[0-9a-f]{16}$"


class ConsentKind(StrEnum):
    """What is held: a new ``token`` asking for a marked scope, or the credential of a
    marked OAuth ``client``."""

    TOKEN = "token"  # noqa: S105 (a kind's name, no secret)
    CLIENT = "client"


class ConsentState(StrEnum):
    """``pending`` until decided; ``lapsed``: not decided before it expired."""

    PENDING = "pending"
    APPROVED = "approved"
    DENIED = "denied"
    LAPSED = "lapsed"


class Asker(BaseModel):
    """Who asked: the user, the credential (a token id) and the OAuth client, if any."""

    user: str
    token_id: str
    client: str | None = None


class ConsentRequest(BaseModel):
    id: str
    user: str = Field(description="Whose consent it needs: only this user may decide it")
    kind: ConsentKind
    what: str = Field(description="What is asked, in words")
    credential: str = Field(
        description="The credential held until it is approved: the new token's id, or the"
        " id hpcgate gives a provider's token (oidc:...)"
    )
    scopes: list[Scope] = Field(description="The scopes the held credential would hold")
    client: str | None = Field(None, description="The marked OAuth client (kind client)")
    asked_by: Asker
    created_at: datetime
    expires_at: datetime = Field(description="Undecided by then, it lapses")
    state: ConsentState
    decided_at: datetime | None = None


class ConsentAnswer(BaseModel):
    """The answer (202) to a request held for consent: nothing was done yet."""

    consent: ConsentRequest
    token: CreatedToken | None = Field(
        None,
        description="A new token asked for: its secret, shown only now; it is refused until"
        " its user approves the consent request",
    )


class ConsentPending(HpcgateError):
    """A request held for its user's consent: answered 202 with a :class:`ConsentAnswer`
    (not a problem document), raised by the SDK for such an answer."""

    status: ClassVar[int] = 202
    slug: ClassVar[str] = "consent-pending"
    title: ClassVar[str] = "Held for the user's consent"

    def __init__(self, answer: ConsentAnswer) -> None:
        consent = answer.consent
        super().__init__(
            f"consent request {consent.id}: {consent.what}; {consent.user} approves it with"
            f" another credential ('hpcgate consent approve {consent.id}')"
        )
        self.answer = answer
