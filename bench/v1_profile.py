"""Where a streamed llama.cpp completion spends the gateway's CPU, ``/v1`` against the
service proxy: a measure that a loaded machine moves far less than a wall-clock figure.

The app runs in this process (one event loop, ``httpx.ASGITransport``: no sockets to the
gateway, no uvicorn) in a temporary home declaring ``llama`` (llama.cpp's server on the tiny
model, a real job on the embedded scheduler; ``scripts/backends install`` must have run).
The same streamed chat completion is sent through ``/v1/chat/completions`` and through
``/api/v1/services/llama/proxy/v1/chat/completions``, taking turns, and each request is
followed by probes that read the event loop thread's CPU clock (``thread_time_ns``: time
the thread ran, not time it waited) at:

- ``in``: the request enters the app (the outermost middleware);
- ``forward``: the gateway hands it to :meth:`Proxy.forward` (everything before is the
  route's own work: token, body, parse, routing by model, limits);
- ``written``: the request's first write to the replica's connection;
- ``head``: the replica's answer head has been read;
- ``start``: the answer's start is sent to the caller;
- ``first``: the first chunk with a token (``"content"``) is sent to the caller.

Steps are marked too, each when it returns: ``~caller`` (the token checked and counted),
``~whole_body``/``~arrived_body``, ``~read_call`` (the body parsed), ``~openai_limits``,
``~model`` (the model's service found), ``~routed`` (its replica picked), ``~connected``
(a new connection to the replica opened on the request's way, when no kept or spare one
was there; the spares the pool opens in the background are counted apart), ``~answer`` (the proxy's
answer), ``~metered``, ``~call``; and the CPU time spent in the audit log's entry and
record. It prints the median µs of each step by route, with the number of runs that had
it when not all did (a point is marked once per request, the first time: a health check's
connection can mark ``~connected`` late). A probe costs a few µs (a system call and a
wrapper), counted in the step it ends. ``written→head`` is the replica's time, and
whatever else the thread ran meanwhile, not the gateway's work.

Usage, from the repository root (as bench_services, as root for the replica's account)::

    .venv/bin/python -m bench.v1_profile [--requests 200]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any

import httpx

from bench.bench_services import LLAMA_TOKENS
from tests.support.accounts import unix_account
from tests.support.backends import LLAMA_SERVER, write_llama
from tests.support.gateway_process import FALLBACK
from tests.support.services import toml_string
from tests.support.tiny_gguf import MODEL_NAME

Message = MutableMapping[str, Any]
ROUTES = {
    "v1": "/v1/chat/completions",
    "proxy": "/api/v1/services/llama/proxy/v1/chat/completions",
}
STEPS = ("forward", "written", "head", "start", "first")
WARM = 10
PAUSE = 0.05  # seconds between requests: llama.cpp closes each streamed answer's connection

CONFIG = """
service_wait_seconds = 300

[systems.local]
scheduler = "embedded"
slots = 2

[services.llama]
system = "local"
script = {script}
models = [{model}]
min_replicas = 1
max_replicas = 1
users = ["alice"]
run_as = "services"
"""


class Probes:
    """The thread CPU clock at each probe point of the request being measured."""

    def __init__(self) -> None:
        self.now: dict[str, int] = {}
        self.spent: dict[str, int] = {}  # ns in each timed function, this request
        self.spares = 0  # connections the pool opened ahead, in the background (all requests)

    def mark(self, point: str) -> None:
        self.now.setdefault(point, time.thread_time_ns())

    def add(self, label: str, ns: int) -> None:
        self.spent[label] = self.spent.get(label, 0) + ns

    def steps(self) -> dict[str, float]:
        """µs from each point to the next, in the order they were reached."""
        points = sorted(self.now, key=self.now.__getitem__)
        return {
            f"{a}→{b}": (self.now[b] - self.now[a]) / 1000 for a, b in itertools.pairwise(points)
        }


def _after(probes: Probes, label: str, function: Callable[..., Any]) -> Callable[..., Any]:
    """``function`` marking ``label`` when it returns (awaited, if a coroutine)."""

    if asyncio.iscoroutinefunction(function):

        async def marked_async(*args: Any, **kwargs: Any) -> Any:
            found = await function(*args, **kwargs)
            probes.mark(label)
            return found

        return marked_async

    def marked(*args: Any, **kwargs: Any) -> Any:
        found = function(*args, **kwargs)
        probes.mark(label)
        return found

    return marked


def _timed(probes: Probes, label: str, function: Callable[..., Any]) -> Callable[..., Any]:
    """``function`` (not a coroutine) adding the CPU time of each call to ``label``."""

    def timed(*args: Any, **kwargs: Any) -> Any:
        began = time.thread_time_ns()
        try:
            return function(*args, **kwargs)
        finally:
            probes.add(label, time.thread_time_ns() - began)

    return timed


def _connect_probed(probes: Probes, connect: Callable[..., Any]) -> Callable[..., Any]:
    """``connect`` marking ``~connected`` when a request opens a connection on its way,
    and counting the spares the pool opens in the background."""
    from hpcgate.services import pool

    async def connected(*args: Any, **kwargs: Any) -> Any:
        found = await connect(*args, **kwargs)
        task = asyncio.current_task()
        if task is not None and task.get_name() == getattr(pool, "SPARE_TASK", None):
            probes.spares += 1
        else:
            probes.mark("~connected")
        return found

    return connected


def instrument(app: Any, gateway: Any, probes: Probes) -> Callable[..., Awaitable[None]]:
    """The app wrapped to mark ``in``, ``start`` and ``first``; the proxy and the
    replica's connection patched to mark ``forward``, ``written`` and ``head``; and the
    steps before ``forward`` marked when each returns (``~`` names them)."""
    from hpcgate.api import audit, forwarding
    from hpcgate.services import connection, pool, proxy

    forward, write = proxy.Proxy.forward, connection.Connection._write

    async def probed_forward(self: Any, *args: Any, **kwargs: Any) -> Any:
        probes.mark("forward")
        answer = await forward(self, *args, **kwargs)
        probes.mark("~answer")
        return answer

    async def probed_write(self: Any, data: bytes) -> None:
        probes.mark("written")
        await write(self, data)

    proxy.Proxy.forward = probed_forward  # type: ignore[method-assign]
    connection.Connection._write = probed_write  # type: ignore[method-assign]
    connection.Connection.head = _after(probes, "head", connection.Connection.head)  # type: ignore[method-assign]
    pool.connect = _connect_probed(probes, pool.connect)  # type: ignore[attr-defined]
    for name in ("whole_body", "arrived_body", "read_call", "openai_limits"):
        setattr(forwarding, name, _after(probes, f"~{name}", getattr(forwarding, name)))
    forwarding.Forwarding._caller = _after(probes, "~caller", forwarding.Forwarding._caller)  # type: ignore[method-assign]
    openai, services = gateway.openai, gateway.services
    openai._model = _after(probes, "~model", openai._model)
    openai._metered = _after(probes, "~metered", openai._metered)
    openai.call = _after(probes, "~call", openai.call)
    services.routed = _after(probes, "~routed", services.routed)
    services.route = _after(probes, "~route", services.route)
    gateway.audit.record = _timed(probes, "audit record", gateway.audit.record)
    audit._entry = _timed(probes, "audit entry", audit._entry)
    for name in ("admit", "bearer_token"):
        setattr(forwarding, name, _timed(probes, name, getattr(forwarding, name)))

    async def probed(scope: Message, receive: Any, send: Any) -> None:
        probes.mark("in")

        async def probed_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                await send(message)
                probes.mark("start")
                return
            await send(message)
            if b'"content"' in message.get("body", b""):
                probes.mark("first")

        await app(scope, receive, probed_send)

    return probed


def make_home() -> Path:
    home = Path(tempfile.mkdtemp(prefix="hpcgate-v1-profile-"))
    home.chmod(0o755)  # the replica's account reaches its working directory
    llama = write_llama(home / "llama")
    config = CONFIG.format(
        script=toml_string(llama.script.read_text()), model=toml_string(MODEL_NAME)
    )
    if os.geteuid() == 0:
        unix_account(FALLBACK)
        config += f'\n[users]\nfallback = "{FALLBACK}"\n'
    (home / "config.toml").write_text(config)
    return home


def request_body() -> dict[str, Any]:
    return {
        "model": MODEL_NAME,
        "messages": [{"role": "user", "content": "Count from one to forty."}],
        "max_tokens": LLAMA_TOKENS,
        "stream": True,
    }


async def one(client: httpx.AsyncClient, path: str, headers: dict[str, str]) -> None:
    async with client.stream("POST", path, json=request_body(), headers=headers) as answer:
        if answer.status_code != 200:
            raise AssertionError(f"{path}: {answer.status_code} {(await answer.aread())[:300]!r}")
        async for _ in answer.aiter_raw():
            pass


async def probe_steps(
    client: httpx.AsyncClient, headers: dict[str, str], probes: Probes, requests: int
) -> dict[str, dict[str, float]]:
    taken: dict[str, list[dict[str, float]]] = {route: [] for route in ROUTES}
    for index in range(requests * len(ROUTES)):
        route = list(ROUTES)[index % len(ROUTES)]
        probes.now, probes.spent = {}, {}
        await one(client, ROUTES[route], headers)
        await asyncio.sleep(PAUSE)
        if {"in", *STEPS} <= set(probes.now):
            spent = {f"in {label}": ns / 1000 for label, ns in probes.spent.items()}
            taken[route].append(probes.steps() | spent)
    figures = {}
    for route, runs in taken.items():
        steps = {step: None for r in runs for step in r}  # as first reached
        medians = {step: statistics.median(r[step] for r in runs if step in r) for step in steps}
        seen = {step: sum(step in r for r in runs) for step in steps}
        medians["in→first"] = statistics.median(
            sum(us for step, us in r.items() if "→" in step) for r in runs
        )
        figures[route] = {
            step
            if seen.get(step, len(runs)) == len(runs)
            else f"{step} ({seen[step]} runs)": round(us, 1)
            for step, us in medians.items()
        } | {"runs": len(runs)}
    return figures


async def measure(requests: int) -> dict[str, Any]:
    home = make_home()
    os.environ["HPCGATE_HOME"] = str(home)
    from hpcgate.api.app import create_app
    from hpcgate.config import load_settings
    from hpcgate.model.principal import DEFAULT_SCOPES

    app = create_app(load_settings(home / "config.toml"))
    probes = Probes()
    async with app.router.lifespan_context(app):
        gateway = app.state.gateway
        issued = await gateway.tokens.create("alice", frozenset(DEFAULT_SCOPES))
        headers = {"Authorization": f"Bearer {issued.secret}"}
        transport = httpx.ASGITransport(app=instrument(app, gateway, probes))
        client = httpx.AsyncClient(transport=transport, base_url="http://gw", timeout=300)
        async with client:
            try:
                for _ in range(WARM):
                    for path in ROUTES.values():
                        await one(client, path, headers)
                        await asyncio.sleep(PAUSE)
                probes.spares = 0
                steps = await probe_steps(client, headers, probes, requests)
            finally:
                await _stop(client, home)
    spares = probes.spares
    return {"cpu_us_median": steps, "spares_opened": spares, "load_average": os.getloadavg()}


async def _stop(client: httpx.AsyncClient, home: Path) -> None:
    """Scale llama to 0 and wait until its replica is gone (its job would outlive us)."""
    admin = {"Authorization": f"Bearer {(home / 'admin-token').read_text().strip()}"}
    service = "/api/v1/services/llama"
    await client.patch(service, json={"min_replicas": 0, "max_replicas": 0}, headers=admin)
    for _ in range(600):
        replicas = (await client.get(service, headers=admin)).json()["replicas"]
        if all(r["state"] in ("stopped", "failed") for r in replicas):
            return
        await asyncio.sleep(0.1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200, help="probed, per route")
    args = parser.parse_args()
    if not LLAMA_SERVER.exists():
        raise SystemExit(f"no {LLAMA_SERVER}: run scripts/backends install")
    print(json.dumps(asyncio.run(measure(args.requests)), indent=2))


if __name__ == "__main__":
    main()
