"""Usage of the OpenAI-compatible routes: requests and tokens per user, service and model.

Token counts come from the backend's ``usage`` (a service's own answer): a count that is not
a whole number in ``[0, TOKENS_MAX]`` is taken as unknown (0), so no backend can make a
stored total overflow or go negative.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from pydantic import BaseModel, Field

from hpcgate.model.bounds import INT32_MAX, INT64_MAX

#: Tokens one request may count (per kind): more than any context window.
TOKENS_MAX = INT32_MAX
#: What a read adds up to at most (the BIGINT of the store).
TOTAL_MAX = INT64_MAX


def token_count(value: object) -> int:
    """A backend's token count, or 0 when it is not a whole number in range."""
    if type(value) is int and 0 <= value <= TOKENS_MAX:
        return value
    return 0


@dataclass(frozen=True, slots=True)
class Tokens:
    prompt: int = 0
    completion: int = 0


@dataclass(frozen=True, slots=True)
class UsageEntry:
    """One answered request on ``/v1``."""

    user: str
    owner: str  # the service's owner ("" for a declared service)
    service: str
    model: str
    tokens: Tokens
    at: datetime


class Usage(BaseModel):
    """Totals of one user on one model of one service over the asked time range."""

    user: str
    service: str
    owner: str | None = Field(description="The service's owner; null for a declared service")
    model: str
    requests: int = Field(ge=0, le=TOTAL_MAX)
    prompt_tokens: int = Field(ge=0, le=TOTAL_MAX)
    completion_tokens: int = Field(ge=0, le=TOTAL_MAX)
