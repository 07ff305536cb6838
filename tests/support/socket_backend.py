"""A small real WebSocket server (the ``websockets`` library) that tests start as a service's
replica job. It listens on ``$HPCGATE_SERVICE_PORT``, answers ``GET /health`` with 200 and
``/refuse`` with a 403 of its own, takes the subprotocol ``chat`` when offered, and on a
WebSocket at any other path answers each message:

- a binary message, or text not named below: the same message back;
- ``path``: the request target it got; ``env``: ``$HPCGATE_SERVICE_PREFIX``;
- ``close CODE REASON``: closes with that code and reason;
- ``ping``: pings the caller, then says ``pong seen`` when the pong came;
- ``last close``: the code and reason of the last socket the caller closed (``none``);
- ``burst N SIZE``: N binary messages of SIZE bytes;
- ``exit``: the server ends at once, closing no socket (a replica that dies).
"""

from __future__ import annotations

import asyncio
import http
import os
from collections.abc import Sequence

from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response
from websockets.typing import Subprotocol

last_close = "none"


def special(connection: ServerConnection, request: Request) -> Response | None:
    if request.path == "/health":
        return connection.respond(http.HTTPStatus.OK, "ok\n")
    if request.path.startswith("/refuse"):
        return connection.respond(http.HTTPStatus.FORBIDDEN, "refused here\n")
    return None


async def answer(connection: ServerConnection, message: str | bytes) -> None:
    global last_close
    if isinstance(message, bytes):
        await connection.send(message)
    elif message == "path":
        await connection.send(connection.request.path if connection.request else "")
    elif message == "env":
        await connection.send(os.environ.get("HPCGATE_SERVICE_PREFIX", ""))
    elif message.startswith("close "):
        _, code, reason = message.split(" ", 2)
        await connection.close(int(code), reason)
    elif message == "ping":
        await (await connection.ping(b"from the replica"))
        await connection.send("pong seen")
    elif message == "last close":
        await connection.send(last_close)
    elif message == "exit":
        os._exit(1)
    elif message.startswith("burst "):
        _, count, size = message.split()
        for _ in range(int(count)):
            await connection.send(b"b" * int(size))
    else:
        await connection.send(message)


async def handler(connection: ServerConnection) -> None:
    global last_close
    try:
        async for message in connection:
            await answer(connection, message)
    except ConnectionClosed:
        pass
    received = connection.protocol.close_rcvd
    if received is not None and connection.protocol.close_rcvd_then_sent:
        last_close = f"{received.code} {received.reason}"


def chat(_: ServerConnection, offered: Sequence[Subprotocol]) -> Subprotocol | None:
    return Subprotocol("chat") if "chat" in offered else None


async def main() -> None:
    port = int(os.environ["HPCGATE_SERVICE_PORT"])
    host = os.environ.get("HPCGATE_SERVICE_HOST", "0.0.0.0")  # noqa: S104 (a job's server)
    async with serve(
        handler, host, port, process_request=special, select_subprotocol=chat, max_size=32 << 20
    ) as server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())
