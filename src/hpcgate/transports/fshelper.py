"""The per-account file helper: ``python -I -m hpcgate.transports.fshelper``.

In multi-user mode the gateway (root) starts one or more of these per account, with the
account's uid, gid and groups already set (``setpriv``), and talks to it over the Unix
socket that is its stdin. Every file operation then happens in a process of the account,
so the kernel checks the account's own permissions. To move file contents the helper opens
the file and hands the open descriptor to the gateway (``SCM_RIGHTS``), which then reads or
writes it at full speed, with the access the account's ``open`` was granted.

Frames, both ways: 4 bytes big-endian length, then JSON. A request is
``{"op": name, "args": {...}}`` (a function of :data:`.local_ops.OPERATIONS` or
``OPENERS`` and its arguments by name); the answer ``{"ok": true, "result": ...}`` or
``{"ok": false, "errno": n, "message": text}``; an ``open_*`` answer carries the
descriptor with its frame. Imports stay within the standard library and
:mod:`.local_ops`, so the helper starts in a few tens of milliseconds. This format is the
local transport's own (:mod:`.local_files`): nothing else names an operation by string.
"""

from __future__ import annotations

import json
import os
import socket
import struct
from typing import Any

from hpcgate.transports.local_ops import OPENERS, OPERATIONS

HEADER = struct.Struct(">I")
MAX_FRAME = 64 << 20


def encode(message: dict[str, Any]) -> bytes:
    payload = json.dumps(message, separators=(",", ":")).encode()
    return HEADER.pack(len(payload)) + payload


def receive(sock: socket.socket, with_fd: bool = False) -> tuple[dict[str, Any] | None, int]:
    """One frame (None at end of stream) and the descriptor it carried (-1 if none)."""
    first, fds, _flags, _address = socket.recv_fds(sock, 65536, 1 if with_fd else 0)
    fd = fds[0] if fds else -1
    if not first:
        return None, fd
    while len(first) < HEADER.size:
        first += _more(sock, HEADER.size - len(first))
    (length,) = HEADER.unpack_from(first)
    if length > MAX_FRAME:
        raise OSError(90, "frame too large")
    body = first[HEADER.size :]
    while len(body) < length:
        body += _more(sock, length - len(body))
    return json.loads(body), fd


def _more(sock: socket.socket, size: int) -> bytes:
    chunk = sock.recv(min(size, 1 << 20))
    if not chunk:
        raise ConnectionError("the other end closed the socket mid-frame")
    return chunk


def answer(request: dict[str, Any]) -> tuple[dict[str, Any], int]:
    """Carry out one request; failures become an errno answer, never an exception."""
    op, args = request.get("op"), request.get("args") or {}
    try:
        if op in OPENERS:
            path, root = str(args["path"]), str(args.get("root", "/"))
            return {"ok": True, "result": None}, OPENERS[op](path, root)
        if op in OPERATIONS:
            return {"ok": True, "result": OPERATIONS[op](**args)}, -1
        return {"ok": False, "errno": 22, "message": f"unknown operation {op!r}"}, -1
    except OSError as exc:
        return {"ok": False, "errno": exc.errno or 5, "message": exc.strerror or str(exc)}, -1
    except (TypeError, ValueError, KeyError) as exc:
        return {"ok": False, "errno": 22, "message": str(exc)}, -1


def serve(sock: socket.socket) -> None:
    while True:
        request, _ = receive(sock)
        if request is None:
            return
        reply, fd = answer(request)
        if fd < 0:
            sock.sendall(encode(reply))
            continue
        try:
            socket.send_fds(sock, [encode(reply)], [fd])
        finally:
            os.close(fd)


def main() -> None:
    with socket.socket(fileno=os.dup(0)) as sock:
        os.close(0)
        serve(sock)


if __name__ == "__main__":
    main()
