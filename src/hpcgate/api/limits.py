"""A cap on request bodies, checked before any handler reads them."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from hpcgate.api.problems import problem
from hpcgate.model.errors import PayloadTooLarge


def streamed(path: str) -> bool:
    """Routes whose body goes to disk as it arrives: file uploads and upload chunks."""
    return path.endswith("/files/upload") or "/files/uploads/" in path


class BodyLimit:
    """Answers 413 for a body larger than ``max_bytes`` (declared or streamed), except on
    the routes that stream their body to disk (file uploads), which have no limit."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or streamed(scope["path"]):
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._refuse(scope, receive, send)
            return
        await self.app(scope, self._counting(receive), send)

    def _counting(self, receive: Receive) -> Receive:
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.max_bytes:
                raise PayloadTooLarge(f"the request body exceeds {self.max_bytes} bytes")
            return message

        return counted

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = problem(
            413,
            PayloadTooLarge.slug,
            PayloadTooLarge.title,
            f"the request body exceeds {self.max_bytes} bytes",
        )
        await response(scope, receive, send)
