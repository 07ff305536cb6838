"""TCP connections from this machine, as anyio socket streams.

An IP address is connected to directly. ``anyio.connect_tcp`` runs Happy Eyeballs even
for one literal address (a task group, an event and a timeout for it), which costs the
proxy's hot path about 0.4 ms and twice the CPU of the connection itself, on every new
connection to a replica (llama.cpp's server closes its connection after each streamed
answer: bench/RESULTS.md). A host name still goes through ``anyio.connect_tcp``.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket

import anyio
from anyio.abc import SocketStream


async def connect(host: str, port: int) -> SocketStream:
    """A connection to ``host``:``port`` (OSError if there is none)."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return await anyio.connect_tcp(host, port)
    family = socket.AF_INET6 if address.version == 6 else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, (host, port))
        return await SocketStream.from_socket(sock)  # its transport owns the socket now
    except BaseException:
        sock.close()
        raise
