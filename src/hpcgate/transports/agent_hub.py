"""The live agent connections of each system, in this gateway process.

An :class:`AgentLink` is one connection: it numbers its requests (the channel; never reused
on it), sends each once, and hands each its RESULT (and LINE frames before it). When the
connection breaks every request still waiting fails with ``TransportError``: its outcome is
unknown and it is never sent again on its own (a submit is then settled by its tag, as over
SSH). :class:`AgentHub` picks, per request, the link with the fewest requests in flight
among those that may serve the request's account.
"""

from __future__ import annotations

import itertools
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

import anyio

from hpcgate.agentwire import messages as m
from hpcgate.agentwire.frames import Frame, Kind, ProtocolError, control, fields
from hpcgate.agentwire.pipe import STREAM_KINDS
from hpcgate.clock import utcnow
from hpcgate.model.errors import TransportError
from hpcgate.transports.agent_streams import LinkStreams

R = TypeVar("R")
RETRY_AFTER = 5.0  # seconds: agents reconnect within their backoff's first steps
MAX_IN_FLIGHT = 4096
Send = Callable[[bytes], Awaitable[None]]


def unavailable(detail: str) -> TransportError:
    error = TransportError(detail)
    error.retry_after = RETRY_AFTER
    return error


@dataclass
class _Pending:
    request: m.Request[Any]
    on_line: Callable[[str], None] | None
    done: anyio.Event = field(default_factory=anyio.Event)
    fields: dict[str, object] | None = None


class AgentLink:
    """One agent's connection, as the gateway uses it."""

    def __init__(self, hello: m.Hello, token_id: str, send: Send) -> None:
        self.hello = hello
        self.token_id = token_id
        self.connected_since: datetime = utcnow()
        self._send = send
        self._lock = anyio.Lock()
        self._pending: dict[int, _Pending] = {}
        self._channels = itertools.count(1)
        self._broken: str | None = None
        self.streams = LinkStreams()  # its byte streams (:mod:`.agent_streams`)

    @property
    def in_flight(self) -> int:
        return len(self._pending) + len(self.streams)

    def next_channel(self) -> int:
        """A channel never used on this connection (for a stream)."""
        return next(self._channels)

    def serves(self, account: str | None) -> bool:
        """Whether this agent may act for ``account`` (a user's agent: only its user)."""
        return self.hello.user is None or account in (None, self.hello.user)

    async def call(
        self,
        request: m.Request[R],
        account: str | None,
        on_line: Callable[[str], None] | None = None,
    ) -> R | m.Failure:
        """Send ``request`` once and wait for its outcome."""
        if self._broken is not None or len(self._pending) >= MAX_IN_FLIGHT:
            raise unavailable(self._broken or "the agent has too many requests in flight")
        channel = next(self._channels)
        pending = self._pending[channel] = _Pending(request, on_line)
        try:
            await self.send(control(Kind.REQUEST, channel, m.request_fields(request, account)))
            await pending.done.wait()
        except BaseException:
            if not pending.done.is_set() and self._broken is None:
                with anyio.CancelScope(shield=True), anyio.move_on_after(1):
                    await self.send(control(Kind.CANCEL, channel, {}))
            raise
        finally:
            self._pending.pop(channel, None)
        if pending.fields is None:
            raise unavailable(f"the agent's connection broke; outcome unknown ({self._broken})")
        return m.parse_result(request, pending.fields)

    async def send(self, message: bytes) -> None:
        async with self._lock:
            await self._send(message)

    async def deliver(self, frame: Frame) -> None:
        """A frame from the agent (ProtocolError for one the protocol does not allow)."""
        if frame.kind in STREAM_KINDS:
            self.streams.deliver(frame)
            return
        pending = self._pending.get(frame.channel)
        if frame.kind is Kind.LINE:
            if pending is not None and pending.on_line is not None:
                pending.on_line(str(fields(frame).get("line", ""))[:4096])
            return
        if frame.kind is not Kind.RESULT:
            raise ProtocolError(f"a {frame.kind.name} frame from an agent")
        if pending is not None:
            pending.fields = fields(frame)
            pending.done.set()
        else:
            self.streams.ended(frame.channel, fields(frame))
        await self.send(control(Kind.ACK, frame.channel, {}))

    def broken(self, reason: str) -> None:
        """The connection ended: every waiting request learns it."""
        self._broken = reason
        self.streams.break_all(reason)
        for pending in self._pending.values():
            pending.done.set()


class AgentHub:
    """The links of every system, and this gateway process's epoch (new at each start)."""

    def __init__(self) -> None:
        self.epoch = secrets.token_hex(8)
        self._links: dict[str, list[AgentLink]] = {}

    def add(self, system: str, link: AgentLink) -> None:
        self._links.setdefault(system, []).append(link)

    def remove(self, system: str, link: AgentLink) -> None:
        links = self._links.get(system, [])
        if link in links:
            links.remove(link)

    def links(self, system: str) -> list[AgentLink]:
        return list(self._links.get(system, []))

    def pick(self, system: str, account: str | None) -> AgentLink:
        """The link with the fewest requests in flight that may serve ``account``."""
        usable = [link for link in self._links.get(system, []) if link.serves(account)]
        if not usable:
            who = f" for account {account!r}" if account else ""
            raise unavailable(f"no agent of system {system!r} is connected{who}")
        return min(usable, key=lambda link: link.in_flight)
