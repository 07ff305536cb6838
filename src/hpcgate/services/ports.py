"""Whose a replica's port is: the listening sockets of this machine, from the kernel's
socket tables (``/proc/net/tcp`` and ``/proc/net/tcp6``: each socket's state, local port
and owner's uid; any account may read them).

Any process of the node may bind a replica's port before the replica's server does (or
after it ended while its job runs on), and would then get the requests, tokens and
cookies the proxy passes on. Where the gateway sees the node's socket table (the node is
its own machine), a replica is ready only if every socket listening on its port belongs to
the replica's account. psutil lists sockets but not their owners' uids, so the tables
are read here.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import anyio

TABLES = (Path("/proc/net/tcp"), Path("/proc/net/tcp6"))
LISTEN = "0A"  # the kernel's TCP_LISTEN, in the table's hex


@dataclass(frozen=True, slots=True)
class Listener:
    """A listening TCP socket: its local port and its owner's uid."""

    port: int
    uid: int


def parse(table: str) -> list[Listener]:
    """The listening sockets of one table's text (its header line and any line that does
    not read as a socket are skipped)."""
    found = []
    for line in table.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 8 or fields[3] != LISTEN:
            continue
        _, _, port = fields[1].rpartition(":")
        try:
            found.append(Listener(int(port, 16), int(fields[7])))
        except ValueError:
            continue
    return found


async def listeners(tables: Iterable[Path] = TABLES) -> list[Listener] | None:
    """This machine's listening TCP sockets (a table that is missing, as tcp6 without
    IPv6, has none); None where there is no table at all (no /proc: not Linux)."""
    found: list[Listener] = []
    read = False
    for table in tables:
        try:
            found += parse(await anyio.Path(table).read_text())
        except FileNotFoundError:
            continue
        read = True
    return found if read else None


def stranger(found: Sequence[Listener], port: int, uid: int) -> str | None:
    """Why ``port`` is not the account ``uid``'s alone (None: it is)."""
    on_port = [listener for listener in found if listener.port == port]
    others = sorted({listener.uid for listener in on_port if listener.uid != uid})
    if others:
        return f"port {port} is taken by another account (uid {others[0]})"
    if not on_port:
        return f"nothing listens on port {port} in this machine's socket table"
    return None


def on_this_machine(address: str) -> bool:
    """Whether a replica's address is this machine's own (a loopback address): only then
    is this machine's socket table the node's."""
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return address == "localhost"
