"""A cap on request bodies, checked before any handler reads them.

A body over the cap is answered 413, whether its length was declared or it came chunked.
Before answering, the middleware reads and discards up to ``DRAIN_BYTES`` of the rest of the
body: a client that sends its whole body before reading the answer (urllib, requests) would
otherwise find the connection reset and never see the 413. A body larger still is cut off:
the answer is sent and the connection closed.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from hpcgate.api.openai_format import is_openai, openai_error
from hpcgate.api.problems import problem
from hpcgate.model.errors import PayloadTooLarge

DRAIN_BYTES = 16 << 20


def streamed(path: str) -> bool:
    """Routes whose body goes on as it arrives: file uploads and upload chunks (to disk),
    an agent's data connection (to a download)."""
    return (
        path.endswith("/files/upload")
        or "/files/uploads/" in path
        or path.startswith("/api/v1/agent/streams/")
    )


class _Body:
    """The request body as the app reads it: counted, and refused past the cap."""

    def __init__(self, receive: Receive, max_bytes: int) -> None:
        self._receive = receive
        self._max = max_bytes
        self.seen = 0
        self.complete = False
        self.too_large = False
        self.answered = False  # the app began its answer before the body proved too large

    async def receive(self) -> Message:
        message = await self._receive()
        self.seen += len(message.get("body", b""))
        self.complete = self.complete or not message.get("more_body", False)
        if self.seen > self._max:
            self.too_large = True
            raise PayloadTooLarge(f"the request body exceeds {self._max} bytes")
        return message

    async def drain(self) -> None:
        """Read and drop the rest of the body, up to :data:`DRAIN_BYTES`."""
        while not self.complete and self.seen <= DRAIN_BYTES:
            message = await self._receive()
            if message["type"] == "http.disconnect":
                return
            self.seen += len(message.get("body", b""))
            self.complete = not message.get("more_body", False)


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
        body = _Body(receive, self.max_bytes)
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            body.too_large = True
        else:
            await self._run(scope, body, send)
        if body.too_large and not body.answered:
            await body.drain()
            await self._refuse(scope, receive, send)

    async def _run(self, scope: Scope, body: _Body, send: Send) -> None:
        """The app, whose answer is held back once the body proved too large: whatever the
        app made of the refusal (a parse error, say), the client gets the 413."""

        async def guarded(message: Message) -> None:
            if not body.too_large:
                body.answered = True
                await send(message)

        try:
            await self.app(scope, body.receive, guarded)
        except Exception:
            if not body.too_large:
                raise

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        detail = f"the request body exceeds {self.max_bytes} bytes"
        if is_openai(scope["path"]):
            await openai_error(413, detail, PayloadTooLarge.slug)(scope, receive, send)
            return
        response = problem(
            413,
            PayloadTooLarge.slug,
            PayloadTooLarge.title,
            f"the request body exceeds {self.max_bytes} bytes",
        )
        await response(scope, receive, send)
