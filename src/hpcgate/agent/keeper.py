"""The results the agent keeps until the gateway acknowledges them, so that a break of the
connection (or a ``kill -9`` of the agent) between a command's end and the gateway's
receipt loses nothing: after the reconnect the gateway asks STATUS and gets the RESULT.

A kept request is one that does something (not ``idempotent``: the gateway would simply
ask an idempotent one again) and is not bound to one connection (an open file's
operations are not). It outlives the connection it came on; its result is keyed by the
gateway's epoch and the request's channel (a gateway numbers channels once per epoch), held
in memory and in one file per result under ``state_dir/results`` (directory 0700, files
0600, written to a temporary name and renamed, so a file is whole or absent), and dropped
on the gateway's ACK, after :data:`KEEP_FOR`, or oldest first beyond :data:`MAX_KEPT`
results or :data:`MAX_KEPT_BYTES` bytes. A request the agent does not know (never seen, not
kept, or running when the agent died) is ``unknown``: the gateway then settles it as any
lost outcome (a submit by its tag) and never repeats it.

A result sent at once on a live connection is written to its file only if the ACK is not
back within :data:`SPOOL_AFTER` (at once if the agent stops first): the usual command
costs no file write, rename and unlink on its way. So a ``kill -9`` of the agent within
that moment after sending a result, with the gateway's ACK lost to the same break, loses
the result: that request is then ``unknown``, as one running at the kill would be. A
result no connection waits for is written at once.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import anyio

MAX_KEPT = 1024
MAX_KEPT_BYTES = 64 * 1024 * 1024
KEEP_FOR = 15 * 60.0  # seconds: far beyond any wait of the gateway for a reconnect
SPOOL_AFTER = 1.0  # seconds a result sent on a live connection waits for its ACK in memory
EPOCH = re.compile(r"[0-9A-Za-z]{1,64}")
RUNNING, UNKNOWN = "running", "unknown"
Key = tuple[str, int]  # (the gateway's epoch, the request's channel)
Deliver = Callable[[int, dict[str, object]], Awaitable[None]]
log = logging.getLogger("hpcgate.agent")


@dataclass
class _Running:
    scope: anyio.CancelScope
    deliver: Deliver | None  # the connection to send its RESULT on, if one waits for it


@dataclass
class _Kept:
    body: dict[str, object]
    size: int
    at: float = field(default_factory=time.time)
    record: bytes = b""  # its file's content while it is not written (b"": written)


class ResultKeeper:
    """The kept requests of one agent process: running, or finished and not yet ACKed."""

    def __init__(self, state_dir: Path) -> None:
        self._directory = state_dir / "results"
        self._running: dict[Key, _Running] = {}
        self._kept: dict[Key, _Kept] = {}
        self._bytes = 0
        self._spooled = True

    def load(self) -> None:
        """Take up the results a previous process of this agent left unacknowledged."""
        try:
            self._directory.mkdir(parents=True, exist_ok=True, mode=0o700)
            names = sorted(os.listdir(self._directory))
        except OSError as exc:
            log.warning("results are kept in memory only: %s: %s", self._directory, exc)
            self._spooled = False
            return
        for name in names:
            self._load_one(name)
        self._trim()

    def _load_one(self, name: str) -> None:
        path = self._directory / name
        key = _key_of(name)
        try:
            if key is None or path.is_symlink():
                raise ValueError("not a kept result")
            record = json.loads(path.read_bytes())
            body, at = record["body"], float(record["at"])
            if not isinstance(body, dict):
                raise ValueError("its body is no object")
        except (OSError, ValueError, KeyError, TypeError):
            with contextlib.suppress(OSError):
                path.unlink()
            return
        size = path.stat().st_size
        self._kept[key] = _Kept(body, size, at)
        self._bytes += size

    def known(self, key: Key) -> bool:
        return key in self._running or key in self._kept

    @property
    def running(self) -> int:
        return len(self._running)

    def started(self, key: Key, scope: anyio.CancelScope, deliver: Deliver) -> None:
        self._running[key] = _Running(scope, deliver)

    def cancel(self, key: Key) -> bool:
        """The gateway cancelled a kept request; whether it was running."""
        running = self._running.get(key)
        if running is not None:
            running.scope.cancel()
        return running is not None

    def detach(self, deliver: Deliver) -> None:
        """A connection ended: its running requests' results wait for a STATUS."""
        for running in self._running.values():
            if running.deliver == deliver:  # bound methods: equal, not identical
                running.deliver = None

    async def finished(self, key: Key, body: dict[str, object] | None) -> None:
        """A kept request ended (``body`` None: cancelled by the gateway, nothing to keep);
        its result is kept, then sent on the connection that waits for it."""
        running = self._running.pop(key, None)
        if body is None:
            return
        waits = running is not None and running.deliver is not None
        self._keep(key, body, spool=not waits)
        if running is not None and running.deliver is not None:
            await running.deliver(key[1], body)

    async def spool_unacknowledged(self, key: Key) -> None:
        """Write ``key``'s result to its file unless its ACK comes within
        :data:`SPOOL_AFTER` (at once if cancelled: the agent is stopping)."""
        try:
            await anyio.sleep(SPOOL_AFTER)
        finally:
            kept = self._kept.get(key)
            if kept is not None and kept.record:
                self._write(key, kept.record)
                kept.record = b""

    def offer(self, key: Key, deliver: Deliver) -> dict[str, object] | str:
        """The answer to the gateway's STATUS: the kept RESULT body, or ``running`` (its
        RESULT will be sent through ``deliver``), or ``unknown``."""
        kept = self._kept.get(key)
        if kept is not None:
            return kept.body
        running = self._running.get(key)
        if running is None:
            return UNKNOWN
        running.deliver = deliver
        return RUNNING

    def acknowledged(self, key: Key) -> None:
        """The gateway has the result: forget it."""
        kept = self._kept.pop(key, None)
        if kept is not None:
            self._bytes -= kept.size
            if not kept.record:  # written
                self._unlink(key)

    def _keep(self, key: Key, body: dict[str, object], spool: bool) -> None:
        record = json.dumps({"at": time.time(), "body": body}, separators=(",", ":"))
        data = record.encode("utf-8")
        if spool:
            self._write(key, data)
        self._kept[key] = _Kept(body, len(data), record=b"" if spool else data)
        self._bytes += len(data)
        self._trim()

    def _write(self, key: Key, data: bytes) -> None:
        if not self._spooled:
            return
        name = _name(key)
        temporary = self._directory / f".{name}.tmp"
        try:
            fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
            with os.fdopen(fd, "wb") as out:
                out.write(data)
            os.replace(temporary, self._directory / name)
        except OSError as exc:
            log.warning("result %s kept in memory only: %s", name, exc)

    def _trim(self) -> None:
        """Drop expired results, then the oldest beyond the bounds (each one logged)."""
        oldest_allowed = time.time() - KEEP_FOR
        for key in sorted(self._kept, key=lambda k: self._kept[k].at):
            kept = self._kept[key]
            over = len(self._kept) > MAX_KEPT or self._bytes > MAX_KEPT_BYTES
            if kept.at >= oldest_allowed and not over:
                break
            log.warning("result %s dropped unacknowledged", _name(key))
            self.acknowledged(key)

    def _unlink(self, key: Key) -> None:
        if self._spooled:
            with contextlib.suppress(OSError):
                (self._directory / _name(key)).unlink()


def _name(key: Key) -> str:
    return f"{key[0]}-{key[1]}.json"


def _key_of(name: str) -> Key | None:
    stem, _, suffix = name.partition(".")
    epoch, dash, channel = stem.partition("-")
    if suffix != "json" or not dash or not EPOCH.fullmatch(epoch) or not channel.isdigit():
        return None
    return epoch, int(channel)
