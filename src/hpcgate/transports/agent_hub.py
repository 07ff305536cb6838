"""The live agent connections of each system, in this gateway process.

An :class:`AgentLink` is one connection: it sends each request once on a channel (numbered
by the hub, never reused in this process, whose ``epoch`` the agent learns at WELCOME) and
hands each its RESULT (and LINE frames before it), which it ACKs. :class:`AgentHub` picks,
per request, the link with the fewest requests in flight among those that may serve the
request's account (a user's agent serves only that user: if every agent connected is
another user's, the request is refused, 403), and carries a request across a break of its link
(:meth:`AgentHub.call`):

- an idempotent one is sent again, to any agent of the system that may serve it;
- one whose result the agent keeps (:func:`~hpcgate.agentwire.messages.kept`) waits, up to
  :data:`RESUME_WAIT`, for the same agent (its id) to return, and asks it STATUS: the kept
  RESULT, or ``running`` (it follows), or ``unknown``;
- one bound to its connection (an open file's) fails.

Whatever is not settled so fails with ``TransportError`` (503 with Retry-After): its
outcome is unknown and it is never sent again on its own (a submit is then settled by its
tag, as over SSH).

One exception: a ``discard`` (an upload's hidden file, after the upload failed) that found
no agent is kept (:meth:`AgentHub.discard_later`) and done by the system's next agent that
may act for its account, as it connects: a revoked agent's upload leaves nothing behind
for long. (A resumable upload keeps its partial file across a break on purpose: only its
abort discards it.)
"""

from __future__ import annotations

import contextlib
import itertools
import secrets
from collections import deque
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

import anyio

from hpcgate.agentwire import codec
from hpcgate.agentwire import messages as m
from hpcgate.agentwire.frames import Frame, Kind, ProtocolError, control, fields
from hpcgate.agentwire.pipe import STREAM_KINDS
from hpcgate.clock import utcnow
from hpcgate.model.errors import Forbidden, TransportError
from hpcgate.transports.agent_bulk import BulkStreams
from hpcgate.transports.agent_streams import LinkStreams

R = TypeVar("R")
RETRY_AFTER = 5.0  # seconds: agents reconnect within their backoff's first steps
RESUME_WAIT = 20.0  # seconds a request cut by a break waits for its agent (or another)
MAX_RESENDS = 3  # an idempotent request is sent at most this often in all
MAX_IN_FLIGHT = 4096
MAX_DISCARDS = 1024  # kept discards a system, waiting for an agent
Send = Callable[[bytes], Awaitable[None]]


def unavailable(detail: str) -> TransportError:
    error = TransportError(detail)
    error.retry_after = RETRY_AFTER
    return error


@dataclass
class _Pending:
    request: m.Request[Any]
    account: str | None
    on_line: Callable[[str], None] | None
    channel: int = 0
    done: anyio.Event = field(default_factory=anyio.Event)
    fields: dict[str, object] | None = None
    unknown: bool = False  # the agent said it has no outcome to give


class AgentLink:
    """One agent's connection, as the gateway uses it."""

    def __init__(
        self,
        hello: m.Hello,
        token_id: str,
        send: Send,
        channels: Iterator[int] | None = None,
        bulk: BulkStreams | None = None,
    ) -> None:
        self.hello = hello
        self.token_id = token_id
        self.bulk = bulk  # the hub's bulk reads, if this agent takes them (None: it does not)
        self.connected_since: datetime = utcnow()
        self.replaced = anyio.Event()  # the same agent connected again: this link is over
        self._send = send
        self._lock = anyio.Lock()
        self._pending: dict[int, _Pending] = {}
        self._channels = channels if channels is not None else itertools.count(1)
        self._broken: str | None = None
        self.streams = LinkStreams()  # its byte streams (:mod:`.agent_streams`)

    @property
    def in_flight(self) -> int:
        return len(self._pending) + len(self.streams)

    def next_channel(self) -> int:
        """A channel never used on this connection (for a stream)."""
        return next(self._channels)

    @property
    def is_broken(self) -> bool:
        return self._broken is not None

    @property
    def reason(self) -> str:
        """Why the link broke ('' while it has not)."""
        return self._broken or ""

    def serves(self, account: str | None) -> bool:
        """Whether this agent may act for ``account`` (a user's agent: only its user)."""
        return self.hello.user is None or account in (None, self.hello.user)

    async def call(
        self,
        request: m.Request[R],
        account: str | None,
        on_line: Callable[[str], None] | None = None,
    ) -> R | m.Failure:
        """Send ``request`` once on this link and wait for its outcome (a break: unknown)."""
        pending = _Pending(request, account, on_line)
        await self.attempt(pending, Kind.REQUEST)
        if pending.fields is None:
            raise unavailable(f"the agent's connection broke; outcome unknown ({self._broken})")
        return m.parse_result(request, pending.fields)

    async def attempt(self, pending: _Pending, kind: Kind) -> None:
        """Send ``pending`` (REQUEST on a new channel; STATUS on its own) and wait until
        its RESULT arrives, the agent says it is unknown, or the link breaks."""
        if self._broken is not None or len(self._pending) >= MAX_IN_FLIGHT:
            raise unavailable(self._broken or "the agent has too many requests in flight")
        if kind is Kind.REQUEST:
            pending.channel = next(self._channels)
            body = m.request_fields(pending.request, pending.account)
        else:
            body = {}
        pending.done = anyio.Event()
        self._pending[pending.channel] = pending
        try:
            await self.send(control(kind, pending.channel, body))
            await pending.done.wait()
        except BaseException:
            if not pending.done.is_set() and self._broken is None:
                # a connection that cannot send: the agent sees its end, and stops
                quiet = contextlib.suppress(TransportError)
                with anyio.CancelScope(shield=True), anyio.move_on_after(1), quiet:
                    await self.send(control(Kind.CANCEL, pending.channel, {}))
            raise
        finally:
            self._pending.pop(pending.channel, None)

    async def send(self, message: bytes) -> None:
        """Send one frame; a connection that can no longer send is a TransportError."""
        async with self._lock:
            try:
                await self._send(message)
            except Exception as exc:  # the server's WebSocket errors: none of ours to name
                raise unavailable(f"the agent's connection cannot send: {exc}") from None

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
        if frame.kind is Kind.STATUS:
            progress = codec.decode(fields(frame), m.Progress, "status")
            if pending is not None and progress.state != "running":
                pending.unknown = True
                pending.done.set()
            return
        if frame.kind is not Kind.RESULT:
            raise ProtocolError(f"a {frame.kind.name} frame from an agent")
        if pending is not None:
            pending.fields = fields(frame)
            pending.done.set()
            if not m.kept(type(pending.request)):
                return  # the agent keeps nothing of it: no ACK
        else:
            self.streams.ended(frame.channel, fields(frame))
        with contextlib.suppress(TransportError):  # closing: the result is kept, asked again
            await self.send(control(Kind.ACK, frame.channel, {}))

    def broken(self, reason: str, final: bool = False) -> None:
        """The connection ended: every waiting request learns it (``final``: this agent
        cannot come back, its token revoked, so none waits for it to)."""
        self._broken = reason
        self.streams.break_all(reason)
        for pending in self._pending.values():
            pending.unknown = pending.unknown or final
            pending.done.set()


class AgentHub:
    """The links of every system, and this gateway process's epoch (new at each start)."""

    def __init__(self) -> None:
        self.epoch = secrets.token_hex(8)
        self.channels = itertools.count(1)  # one numbering for every link: see the module
        self.bulk = BulkStreams()  # bulk reads waiting for their agent's data connection
        self._links: dict[str, list[AgentLink]] = {}
        self._discards: dict[str, deque[tuple[m.Discard, str | None]]] = {}
        self._arrived = anyio.Event()

    def add(self, system: str, link: AgentLink) -> None:
        """A new connection; an older one of the same agent is taken as dead (it
        reconnected, so it has left that one, even if no close reached us)."""
        links = self._links.setdefault(system, [])
        for old in [old for old in links if old.hello.agent_id == link.hello.agent_id]:
            links.remove(old)
            old.broken("the agent connected again")
            old.replaced.set()
        links.append(link)
        self._arrived.set()
        self._arrived = anyio.Event()

    def discard_later(self, system: str, request: m.Discard, account: str | None) -> None:
        """Keep a discard that found no agent (an upload's hidden file left behind when its
        agent was cut) for the system's next agent; at most :data:`MAX_DISCARDS` a system,
        in this process (the oldest go first)."""
        kept = self._discards.setdefault(system, deque(maxlen=MAX_DISCARDS))
        kept.append((request, account))

    def discards_for(self, system: str, link: AgentLink) -> list[tuple[m.Discard, str | None]]:
        """The kept discards of ``system`` that ``link`` may do, taken out of the hub."""
        kept = self._discards.get(system)
        if not kept:
            return []
        taken = [item for item in kept if link.serves(item[1])]
        left = [item for item in kept if not link.serves(item[1])]
        kept.clear()
        kept.extend(left)
        return taken

    async def send_discards(self, system: str, link: AgentLink) -> None:
        """Do the kept discards ``link`` may do on it (one it cannot send, the link
        broken, is kept again)."""
        for request, account in self.discards_for(system, link):
            try:
                await link.call(request, account)  # a failure (gone already): nothing to do
            except TransportError:
                self.discard_later(system, request, account)
            except ProtocolError:
                pass

    def remove(self, system: str, link: AgentLink) -> None:
        links = self._links.get(system, [])
        if link in links:
            links.remove(link)

    def links(self, system: str) -> list[AgentLink]:
        return list(self._links.get(system, []))

    def pick(self, system: str, account: str | None) -> AgentLink:
        """The link with the fewest requests in flight that may serve ``account``."""
        usable = self._usable(system, account)
        if not usable and account is not None and self._usable(system, None):
            raise Forbidden(
                f"the agents of system {system!r} each serve only their own user's work,"
                f" and none is {account!r}'s"
            )
        if not usable:
            who = f" for account {account!r}" if account else ""
            raise unavailable(f"no agent of system {system!r} is connected{who}")
        return min(usable, key=lambda link: link.in_flight)

    def _usable(self, system: str, account: str | None) -> list[AgentLink]:
        return [
            link
            for link in self._links.get(system, [])
            if link.serves(account) and not link.is_broken
        ]

    async def call(
        self,
        system: str,
        request: m.Request[R],
        account: str | None,
        on_line: Callable[[str], None] | None = None,
    ) -> R | m.Failure:
        """``request`` on an agent of ``system``, carried across breaks as the module says."""
        link = self.pick(system, account)
        pending = _Pending(request, account, on_line)
        await link.attempt(pending, Kind.REQUEST)
        sends, deadline = 1, anyio.current_time() + RESUME_WAIT
        while pending.fields is None and not pending.unknown:
            if request.bound or (request.idempotent and sends >= MAX_RESENDS):
                break
            found = await self._returned(system, link, request.idempotent, account, deadline)
            if found is None:
                break
            link, kind = found, (Kind.REQUEST if request.idempotent else Kind.STATUS)
            sends += kind is Kind.REQUEST
            await link.attempt(pending, kind)
        if pending.fields is None:
            raise unavailable(f"the agent's connection broke; outcome unknown ({link.reason})")
        return m.parse_result(request, pending.fields)

    async def _returned(
        self, system: str, gone: AgentLink, anyone: bool, account: str | None, deadline: float
    ) -> AgentLink | None:
        """The link that takes over from ``gone``: any usable one (``anyone``) or the same
        agent's next connection; None if none comes before ``deadline``."""
        with anyio.move_on_after(max(deadline - anyio.current_time(), 0)):
            while True:
                arrived = self._arrived
                for link in self._usable(system, account):
                    if anyone or link.hello.agent_id == gone.hello.agent_id:
                        return link
                await arrived.wait()
        return None
