"""A real uvicorn server on 127.0.0.1 around an ASGI application, for the tests of the
gateway's HTTP server protocol (:mod:`hpcgate.api.http_server`)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import uvicorn

from tests.support.gateway_process import free_port


@contextlib.asynccontextmanager
async def serving(app: Any, protocol: type[asyncio.Protocol]) -> AsyncIterator[int]:
    """``app`` served with the HTTP ``protocol`` in this event loop; its port."""
    port = free_port()
    config = uvicorn.Config(
        app, port=port, http=protocol, loop="asyncio", lifespan="off", log_level="warning"
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:  # noqa: ASYNC110 (uvicorn sets a flag, no event)
        await asyncio.sleep(0.01)
    try:
        yield port
    finally:
        server.should_exit = True
        await task
