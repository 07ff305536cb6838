"""A replica's answer as the gateway's: streamed as it comes, and cut off, not ended, when
the replica breaks it off."""

from __future__ import annotations

import contextlib

from fastapi.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from hpcgate.services.proxy import Answer, BrokenAnswer


class ProxiedResponse(StreamingResponse):
    """A streamed answer that the replica may break off midway. It is then left unfinished
    (no last chunk), so the server closes the connection and the caller sees an incomplete
    answer, never a short one that looks whole (an SSE stream without its end, say)."""

    answer: Answer | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            with contextlib.suppress(BrokenAnswer):
                await super().__call__(scope, receive, send)
        finally:
            if self.answer is not None:  # ended even if its body was never started
                await self.answer.aclose()


def proxied(answer: Answer) -> ProxiedResponse:
    """The response that passes the replica's answer on: its status, headers and body."""
    response = ProxiedResponse(answer.body, status_code=answer.status)
    response.raw_headers = answer.headers  # names in lower case already
    response.answer = answer
    return response
