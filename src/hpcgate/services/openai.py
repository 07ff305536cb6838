"""The OpenAI-compatible routes' domain: a request's ``model`` picks the service that
serves it (among those the caller may use), the request goes to a ready replica through
the proxy (same waiting, least in-flight routing and failures as any proxied request), and
the answer comes back as the replica sent it, its ``usage`` counted on the way.

A caller's own service shadows a declared one that names the same model; among several of
the same kind, the first by name serves it. Which service serves which model is worked out
once per user (and admin or not) and kept until the service store's next write, as the
catalogue keeps the rows: a call finds its model with one lookup.
"""

from __future__ import annotations

import functools
import json
import logging
import re
import time
from collections.abc import AsyncGenerator, Hashable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from prometheus_client import Counter, Gauge, Histogram

from hpcgate.clock import utcnow
from hpcgate.model.errors import BadRequest, HpcgateError, NotFound
from hpcgate.model.principal import Principal, Scope
from hpcgate.model.services import ServiceSpec, qualified_name
from hpcgate.model.usage import Tokens, UsageEntry
from hpcgate.services import metrics
from hpcgate.services.catalogue import spec_of
from hpcgate.services.proxy import Answer, Headers, Proxy, end_to_end
from hpcgate.services.quotas import TokenQuota
from hpcgate.services.traffic import Route
from hpcgate.services.usage import StreamMeter, UsageLedger, WholeMeter
from hpcgate.store.tables import ServiceRow

log = logging.getLogger(__name__)

#: The routes forwarded, as the replica's path.
ENDPOINTS = ("chat/completions", "completions", "embeddings")
SSE = b"text/event-stream"
NAME_SHOWN = 128  # of a model name that names none, in the error message
_DROPPED = frozenset({b"content-length", b"accept-encoding"})
_ASK_USAGE = b'"stream_options":{"include_usage":true},'  # a member: the object has others
_OPENING = re.compile(rb"[ \t\r\n]*\{")  # JSON's whitespace, then the object's brace
#: Routing tables kept (one per user, and admin or not): all dropped when full.
TABLES_MAX = 4096
CALLER_GONE = 499  # the status counted for a call whose caller left before its answer


@dataclass(frozen=True, slots=True)
class Model:
    """A model the caller may use, and the service that serves it."""

    id: str
    service: ServiceRow
    spec: ServiceSpec
    created: datetime


@dataclass(frozen=True, slots=True)
class Call:
    """A request to a ``/v1`` route: its model, whether it streams, the body to send on,
    and whether the gateway asked for the stream's usage on the caller's behalf."""

    model: str
    stream: bool
    body: bytes
    asked_usage: bool


class Usable(Protocol):
    async def usable(self, who: Principal) -> list[ServiceRow]: ...

    async def routed(self, row: ServiceRow) -> Route: ...

    async def may_use_now(self, who: Principal, row: ServiceRow) -> bool:
        """Whether the caller may use the service as of now (a project's role is read)."""
        ...

    @property
    def version(self) -> int:
        """Changes whenever what :meth:`usable` gives may have changed."""
        ...


def _object(body: bytes) -> dict[str, Any]:
    try:
        document = json.loads(body)
    except (ValueError, RecursionError):  # RecursionError: nested deeper than Python goes
        raise BadRequest("the body is not JSON (or nests too deep)", param=None) from None
    if not isinstance(document, dict):
        raise BadRequest("the body must be a JSON object", param=None)
    return document


def read_call(body: bytes) -> Call:
    """The call in a request body; for a stream that does not ask for its usage, the body
    is changed to ask for it."""
    document = _object(body)
    model = document.get("model")
    if not isinstance(model, str) or not model:
        raise BadRequest("you must provide a model parameter", param="model")
    stream = document.get("stream") is True
    options = document.get("stream_options")
    if not stream or (options is not None and not isinstance(options, dict)):
        return Call(model, stream, body, asked_usage=False)
    if options is not None and options.get("include_usage") is True:
        return Call(model, stream, body, asked_usage=False)
    return Call(model, stream, _asking_usage(body, document, options), asked_usage=True)


def _asking_usage(body: bytes, document: dict[str, Any], options: dict[str, Any] | None) -> bytes:
    """The body, asking for the stream's usage. A UTF-8 body without ``stream_options``
    (under that name nowhere at its top: the parse kept the last of any duplicates) gets
    the member put first, the rest as sent; any other is written anew."""
    fresh = "stream_options" not in document and json.detect_encoding(body) == "utf-8"
    if fresh and (opening := _OPENING.match(body)):
        return body[: opening.end()] + _ASK_USAGE + body[opening.end() :]
    document["stream_options"] = {**(options or {}), "include_usage": True}
    return json.dumps(document).encode()


def _models(rows: list[ServiceRow]) -> dict[str, Model]:
    found: dict[str, Model] = {}
    for row in rows:
        spec = _spec(row)
        if spec is None or row.stopping:
            continue
        for model in spec.models:
            name = qualified_name(row.project, model)  # a project's: PROJECT~MODEL
            found.setdefault(name, Model(name, row, spec, row.created_at))
    return found


def _table_key(who: Principal) -> Hashable:
    """What the services a caller may use depend on, but the stores' rows: its user, its
    admin scope, its provider's project grants and its token's project and service limits."""
    limit = who.restriction
    limits = (None, None) if limit is None else (limit.project, limit.service)
    return (who.user, who.has(Scope.ADMIN), who.projects, who.project_roles, limits)


def _spec(row: ServiceRow) -> ServiceSpec | None:
    try:
        return spec_of(row.spec)  # parsed once per stored text, not once per request
    except ValueError:
        return None


class OpenAIRoutes:
    """Models the caller may use, and calls to them."""

    def __init__(
        self, services: Usable, proxy: Proxy, ledger: UsageLedger, quota: TokenQuota | None = None
    ) -> None:
        self._services = services
        self._proxy = proxy
        self.ledger = ledger
        self.quota = quota
        self._tables: dict[Hashable, dict[str, Model]] = {}
        self._version = -1

    async def models(self, who: Principal) -> list[Model]:
        """Each model once, served by the first service that names it."""
        return list((await self._table(who)).values())

    async def _table(self, who: Principal) -> dict[str, Model]:
        """The caller's models by name: worked out from the services it may use once per
        store version (their rows and who may use them change only with a write)."""
        who.require(Scope.JOBS_READ)
        version = self._services.version
        if version != self._version:
            self._tables, self._version = {}, version
        key = _table_key(who)
        table = self._tables.get(key)
        if table is None:
            table = _models(await self._services.usable(who))
            if self._services.version == version:  # else read across a write: not kept
                if len(self._tables) >= TABLES_MAX:
                    self._tables = {}
                self._tables[key] = table
        return table

    async def _model(self, who: Principal, name: str) -> Model:
        model = (await self._table(who)).get(name)
        if model is not None and await self._services.may_use_now(who, model.service):
            return model
        shown = name if len(name) <= NAME_SHOWN else name[:NAME_SHOWN] + "…"
        raise NotFound(
            f"The model '{shown}' does not exist or you do not have access to it.",
            param="model",
            code="model_not_found",
        )

    async def call(self, who: Principal, endpoint: str, call: Call, headers: Headers) -> Answer:
        """Send the call to a ready replica of the model's service; its answer, metered."""
        model = await self._model(who, call.model)
        labels = labels_of(model)
        waited = time.monotonic()
        try:
            route = await self._services.routed(model.service)
        except HpcgateError as exc:
            labels.count(exc.status)
            raise
        wait = time.monotonic() - waited  # observed with the rest, once the answer is done
        return await self._forward(who, endpoint, call, headers, model, route, labels, wait)

    async def _forward(
        self,
        who: Principal,
        endpoint: str,
        call: Call,
        headers: Headers,
        model: Model,
        route: Route,
        labels: Labels,
        wait: float,
    ) -> Answer:
        sent = [*end_to_end(headers, _DROPPED), (b"content-length", str(len(call.body)).encode())]
        started = time.monotonic()
        labels.in_flight.inc()
        try:
            answer = await self._proxy.forward(
                route,
                "POST",
                f"/v1/{endpoint}".encode(),
                sent,
                call.body,  # whole: sent again if a kept connection turns out closed
                float(model.spec.request_timeout),
            )
        except BaseException as exc:  # refused, or the caller gone (cancelled) meanwhile
            labels.in_flight.dec()
            labels.done(exc.status if isinstance(exc, HpcgateError) else CALLER_GONE, wait)
            raise
        timing = _Timing(answer.status, wait, time.monotonic() - started)
        return self._metered(who, call, model, labels, answer, timing)

    def _metered(
        self,
        who: Principal,
        call: Call,
        model: Model,
        labels: Labels,
        answer: Answer,
        timing: _Timing,
    ) -> Answer:
        streamed = any(n.lower() == b"content-type" and SSE in v for n, v in answer.headers)
        meter = StreamMeter(call.asked_usage) if streamed else WholeMeter()
        headers = answer.headers
        if streamed and call.asked_usage:  # events may be dropped: the length is unknown
            headers = [(n, v) for n, v in headers if n.lower() != b"content-length"]
        entry = _Entry(who.user, model, call.model, ok=200 <= answer.status < 300)
        ending = _Ending(self, answer, meter, entry, labels, timing)
        return Answer(answer.status, headers, _through(answer.body, meter, ending), ending.end)

    def _settle(self, meter: StreamMeter | WholeMeter, entry: _Entry, labels: Labels) -> None:
        """The answer's usage counted: the ledger, the token metrics, the quota."""
        tokens = meter.tokens if entry.ok else None
        self.ledger.record(entry.done(tokens))
        if tokens is not None:
            labels.tokens(tokens.prompt, tokens.completion)
            if self.quota is not None:
                self.quota.spend(entry.user, tokens)


async def _through(
    body: AsyncGenerator[bytes, None], meter: StreamMeter | WholeMeter, ending: _Ending
) -> AsyncGenerator[bytes, None]:
    """The replica's body, metered; closing it ends the answer. What the metrics and the
    ledger are told waits for the end (none of it is on the way to the first byte)."""
    try:
        async for chunk in body:
            passed = meter.feed(chunk)
            if passed:
                yield passed
        if rest := meter.finish():
            yield rest
    finally:
        await ending.end()


class _Ending:
    """The end of a metered answer, once, whichever way it comes: its body read to its end
    or broken off, or the answer closed before its body was read (the caller left before
    the first chunk): the request stops counting in flight, its usage is counted, and the
    replica's answer is closed (its connection given back)."""

    __slots__ = ("_answer", "_entry", "_labels", "_meter", "_routes", "_timing")

    def __init__(
        self,
        routes: OpenAIRoutes,
        answer: Answer,
        meter: StreamMeter | WholeMeter,
        entry: _Entry,
        labels: Labels,
        timing: _Timing,
    ) -> None:
        self._routes: OpenAIRoutes | None = routes
        self._answer, self._meter, self._entry = answer, meter, entry
        self._labels, self._timing = labels, timing

    async def end(self) -> None:
        routes, self._routes = self._routes, None
        if routes is None:
            return
        timing, labels = self._timing, self._labels
        try:
            labels.in_flight.dec()
            labels.done(timing.status, timing.wait, timing.upstream)
            routes._settle(self._meter, self._entry, labels)
        finally:
            await self._answer.aclose()


class Labels:
    """The metrics of one service and model, each series looked up once, when first used
    (labels are bounded: see :mod:`hpcgate.services.metrics`)."""

    def __init__(self, service: str, model: str) -> None:
        self.service, self.model = service, model
        self._requests: dict[int, Counter] = {}

    @functools.cached_property
    def wait(self) -> Histogram:
        return metrics.WAIT.labels(self.service)

    @functools.cached_property
    def upstream(self) -> Histogram:
        return metrics.UPSTREAM.labels(self.service)

    @functools.cached_property
    def in_flight(self) -> Gauge:
        return metrics.IN_FLIGHT.labels(self.service)

    @functools.cached_property
    def _prompt(self) -> Counter:
        return metrics.TOKENS.labels(self.service, self.model, "prompt")

    @functools.cached_property
    def _completion(self) -> Counter:
        return metrics.TOKENS.labels(self.service, self.model, "completion")

    def done(self, status: int, wait: float | None = None, upstream: float | None = None) -> None:
        """A request answered ``status``, after waiting ``wait`` seconds for a replica (None:
        none came) and ``upstream`` for its answer's head (None: none came)."""
        if wait is not None:
            self.wait.observe(wait)
        if upstream is not None:
            self.upstream.observe(upstream)
        self.count(status)

    def count(self, status: int) -> None:
        counter = self._requests.get(status)
        if counter is None:
            counter = self._requests[status] = metrics.REQUESTS.labels(
                self.service, self.model, str(status)
            )
        counter.inc()

    def tokens(self, prompt: int, completion: int) -> None:
        self._prompt.inc(prompt)
        self._completion.inc(completion)


def labels_of(model: Model) -> Labels:
    """The metrics of a model's service and the model (one object per pair of labels)."""
    owner = model.service.owner
    return _labels(metrics.label(owner, model.service.name), metrics.model_label(owner, model.id))


@functools.lru_cache(maxsize=1024)  # labels are bounded: every user's service is one
def _labels(service: str, model: str) -> Labels:
    return Labels(service, model)


@dataclass(frozen=True, slots=True)
class _Timing:
    status: int
    wait: float
    upstream: float


@dataclass(frozen=True, slots=True)
class _Entry:
    user: str
    model: Model
    name: str
    ok: bool

    def done(self, tokens: Tokens | None) -> UsageEntry:
        counted = tokens or Tokens()
        service = self.model.service
        return UsageEntry(self.user, service.owner, service.name, self.name, counted, utcnow())
