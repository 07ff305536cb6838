"""Usage accounting of the OpenAI-compatible routes: the ``usage`` of each answer read as
it passes, and the ledger that stores it.

A streamed answer is read event by event as its chunks pass (never held whole): its
``usage`` is in its last data event. A chunk of whole events none of which has a usage
passes at once, uncut (most chunks). When the gateway asked for that event on the caller's
behalf (``stream_options.include_usage``), the event is taken out of the caller's stream,
so the caller gets the stream it asked for. A whole (not streamed) answer is kept up to
:data:`JSON_MAX` bytes beside the passing chunks, and its ``usage`` read at its end.

The ledger writes in batches, behind the answers, one row per user, service, model and
hour of each batch; reads add the rows up.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections import defaultdict
from dataclasses import replace
from typing import Any

from hpcgate.model.errors import Forbidden
from hpcgate.model.principal import Principal, Scope
from hpcgate.model.usage import TOTAL_MAX, Tokens, Usage, UsageEntry, token_count
from hpcgate.store.tables import UsageRow
from hpcgate.store.usage import UsageFilter, UsageStore, UsageSum

log = logging.getLogger(__name__)

#: Rows a usage read gives at most.
READ_MAX = 10_000
#: An event (or a whole answer) larger than this is passed on unread: its usage is unknown.
EVENT_MAX = 1 << 20
JSON_MAX = 8 << 20
_EVENT_END = re.compile(rb"\r\n\r\n|\n\n|\r\r")
_WHOLE = (b"\n\n", b"\r\r")  # a chunk that ends so ends an event
#: A usage member that may not be null; a chunk without one has no usage to read.
_USAGE = re.compile(rb'"usage"\s*:\s*[^n\s]')


def usage_of(document: object) -> Tokens | None:
    """The tokens in a decoded answer or chunk's ``usage``, if it has one."""
    usage = document.get("usage") if isinstance(document, dict) else None
    if not isinstance(usage, dict):
        return None
    return Tokens(
        token_count(usage.get("prompt_tokens")), token_count(usage.get("completion_tokens"))
    )


def _data(event: bytes) -> bytes:
    lines = event.splitlines()
    return b"\n".join(line[5:].removeprefix(b" ") for line in lines if line.startswith(b"data:"))


def _decoded(data: bytes) -> Any:
    try:
        return json.loads(data)
    except ValueError:
        return None


def _plain(chunk: bytes) -> bool:
    """Whether the chunk is whole events (it ends one) of which none has a usage that is
    not null: nothing in it to read or to drop, so it need not be cut into events. Most
    chunks of a stream are so (a backend asked for usage sends ``"usage":null`` in each)."""
    return chunk.endswith(_WHOLE) and _USAGE.search(chunk) is None


class StreamMeter:
    """Reads a server-sent event stream as its chunks pass; :meth:`feed` gives the bytes to
    pass on: the chunk itself, unchanged, unless ``drop_usage_only`` (then whole events,
    without the one that holds only the usage)."""

    def __init__(self, drop_usage_only: bool) -> None:
        self._drop = drop_usage_only
        self._rest = b""
        self._blind = False  # an event too large to read: pass everything on unread
        self.tokens: Tokens | None = None

    def feed(self, chunk: bytes) -> bytes:
        if self._blind or (not self._rest and _plain(chunk)):
            return chunk
        self._rest += chunk
        passed = [event for event in self._events() if self._keep(event)]
        if len(self._rest) > EVENT_MAX:
            self._blind = True
            passed.append(self._rest)
            self._rest = b""
        return chunk if not self._drop else b"".join(passed)

    def finish(self) -> bytes:
        """What is left at the end of the stream (an unterminated last event)."""
        rest, self._rest = self._rest, b""
        return rest if self._drop else b""

    def _events(self) -> list[bytes]:
        events = []
        while (end := _EVENT_END.search(self._rest)) is not None:
            events.append(self._rest[: end.end()])
            self._rest = self._rest[end.end() :]
        return events

    def _keep(self, event: bytes) -> bool:
        """Reads the event's usage; False for the usage-only event that is to be dropped."""
        data = _data(event)
        if b'"usage"' not in data:
            return True
        document = _decoded(data)
        tokens = usage_of(document)
        if tokens is None:
            return True
        self.tokens = tokens
        return not (self._drop and isinstance(document, dict) and document.get("choices") == [])


class WholeMeter:
    """Keeps a copy of a whole JSON answer, up to :data:`JSON_MAX`, to read its usage."""

    def __init__(self) -> None:
        self._copy = bytearray()
        self.tokens: Tokens | None = None

    def feed(self, chunk: bytes) -> bytes:
        if len(self._copy) <= JSON_MAX:
            self._copy += chunk
        return chunk

    def finish(self) -> bytes:
        if len(self._copy) <= JSON_MAX:
            self.tokens = usage_of(_decoded(bytes(self._copy)))
        self._copy = bytearray()
        return b""


def _hour_rows(batch: list[UsageEntry]) -> list[UsageRow]:
    totals: dict[tuple[Any, ...], list[int]] = defaultdict(lambda: [0, 0, 0])
    for entry in batch:
        hour = entry.at.replace(minute=0, second=0, microsecond=0)
        total = totals[(hour, entry.user, entry.owner, entry.service, entry.model)]
        total[0] += 1
        total[1] += entry.tokens.prompt
        total[2] += entry.tokens.completion
    return [
        UsageRow(
            hour=hour,
            user=user,
            owner=owner,
            service=service,
            model=model,
            requests=n,
            prompt_tokens=prompt,
            completion_tokens=completion,
        )
        for (hour, user, owner, service, model), (n, prompt, completion) in totals.items()
    ]


class UsageLedger:
    """Takes usage entries at once and stores them in batches, behind the answers."""

    def __init__(self, store: UsageStore) -> None:
        self.store = store
        self._pending: list[UsageEntry] = []
        self._writer: asyncio.Task[None] | None = None

    def record(self, entry: UsageEntry) -> None:
        self._pending.append(entry)
        if self._writer is None or self._writer.done():
            self._writer = asyncio.get_running_loop().create_task(self._write())

    async def _write(self) -> None:
        while self._pending:
            batch, self._pending = self._pending, []
            try:
                await self.store.add_all(_hour_rows(batch))
            except Exception:  # accounting never fails an answer; the loss is logged
                log.exception("%d usage entries could not be stored", len(batch))

    async def flush(self) -> None:
        """Wait until every entry recorded so far is stored (at a stop)."""
        while self._writer is not None and not self._writer.done():
            await self._writer

    async def read(self, who: Principal, wanted: UsageFilter) -> list[Usage]:
        """Totals of the caller's own usage; an admin's read covers every user (or the
        one it names)."""
        who.require(Scope.JOBS_READ)
        if not who.has(Scope.ADMIN):
            if wanted.user not in (None, who.user):
                raise Forbidden("only an admin reads the usage of other users")
            wanted = replace(wanted, user=who.user)
        return [_usage(found) for found in await self.store.sums(wanted, READ_MAX)]


def _usage(found: UsageSum) -> Usage:
    return Usage(
        user=found.user,
        service=found.service,
        owner=found.owner or None,
        model=found.model,
        requests=min(max(found.requests, 0), TOTAL_MAX),
        prompt_tokens=min(max(found.prompt_tokens, 0), TOTAL_MAX),
        completion_tokens=min(max(found.completion_tokens, 0), TOTAL_MAX),
    )
