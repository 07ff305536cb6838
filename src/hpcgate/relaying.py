"""A replica's answer and WebSocket as the gateway's, for the API's routes and the web
interface's pages alike: the answer streamed as it comes, and cut off, not ended, when the
replica breaks it off; the caller's WebSocket relayed to the replica's."""

from __future__ import annotations

import contextlib
from collections.abc import Container

from fastapi.responses import Response, StreamingResponse
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket, WebSocketDisconnect

from hpcgate.services.proxy import Answer, BrokenAnswer
from hpcgate.services.sockets import Message, Refusal, ReplicaSocket, caller_close, relay


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


def proxied(answer: Answer, headers: list[tuple[bytes, bytes]] | None = None) -> ProxiedResponse:
    """The response that passes the replica's answer on: its status, body and headers (its
    own unless others are given; names in lower case)."""
    response = ProxiedResponse(answer.body, status_code=answer.status)
    response.raw_headers = answer.headers if headers is None else headers
    response.answer = answer
    return response


async def serve_socket(
    socket: WebSocket, opened: ReplicaSocket | Refusal, dropped: Container[bytes] = ()
) -> None:
    """The caller's WebSocket relayed to the replica's until either ends; a replica that
    refused the handshake: its answer as the denial, less the ``dropped`` headers."""
    if isinstance(opened, Refusal):
        answer = Response(opened.body, status_code=opened.status)
        kept = [(k.lower(), v) for k, v in opened.headers]
        kept = [(k, v) for k, v in kept if k != b"content-length" and k not in dropped]
        answer.raw_headers = [*kept, (b"content-length", str(len(opened.body)).encode())]
        await socket.send_denial_response(answer)
        return
    await socket.accept(subprotocol=opened.subprotocol)
    caller = _CallerSocket(socket)
    await relay(opened, caller.receive, caller.send)


class _CallerSocket:
    """The caller's side of a relayed WebSocket, in :class:`Message` terms."""

    def __init__(self, socket: WebSocket) -> None:
        self._socket = socket
        self._gone = False

    async def receive(self) -> Message:
        event = await self._socket.receive()
        if event["type"] == "websocket.disconnect":
            self._gone = True
            return Message(None, int(event.get("code") or 1005), event.get("reason") or "")
        text = event.get("text")
        return Message(text if text is not None else bytes(event.get("bytes") or b""))

    async def send(self, message: Message) -> None:
        if self._gone:
            return
        with contextlib.suppress(WebSocketDisconnect, OSError):
            if isinstance(message.data, str):
                await self._socket.send_text(message.data)
            elif isinstance(message.data, bytes):
                await self._socket.send_bytes(message.data)
            else:
                self._gone = True
                await self._socket.close(*caller_close(message))
