"""Services benchmark: the proxy against calling the replica directly on its port.

Starts a real gateway (embedded scheduler, local transport, SQLite) in a temporary home
that declares a service ``clock`` (one replica of ``bench/clock_backend.py``, which answers
on a fixed clock) and, when ``scripts/backends install`` has run, ``llama`` (llama.cpp's
server on the tiny model). It measures on this machine, in one run, as alice:

* small GETs (``/small``): latency p50/p99 sequentially, direct and proxied taking turns
  request by request (with the gateway's own ``/api/v1/health`` beside them: what its
  HTTP stack alone adds), and with ``--concurrency`` clients at once, the two taking turns
  phase by phase; the figure is proxied minus direct; and the gateway's CPU time per
  proxied GET and per health check (the figure that holds on a loaded machine);
* a streamed answer (``/stream``, chunks on a fixed clock): time to the first chunk,
  the gap between chunks and each chunk's delivery time (its arrival minus the time the
  replica stamped in it), p50, proxied minus direct; then the same (first token, gap
  between tokens) on llama.cpp's streamed chat completion, for one realistic figure,
  through the service's proxy and through ``/v1`` (routed by ``model``, usage metered);
* ``--streams`` streamed answers at once through the gateway, ``--stream-rounds`` times
  (after one round direct, for the pace of the client and replica alone): how many were
  dropped or broken (any error, short or out-of-order body), with the gateway's RSS
  before, at its highest during, and after each round;
* cold start, ``--cold`` times: a service of alice's with no replica gets a request; the
  time until its answer, against what the job itself took: the scheduler's
  (start - submit) plus the backend's (ready - job start), the job's script and the
  backend stamping those two on the job's own clock. The difference is what the gateway
  added: the controller noticing the request and submitting, and seeing the replica ready.

Targets (issue 15): small GET p50 +1 ms, first chunk +2 ms, inter-chunk +0.2 ms p50, no
stream dropped with RSS flat, cold start +1 s. The client is Python (httpx), on the same
cores as the gateway: it costs the direct and the proxied figures alike.

Usage, from the repository root:
    .venv/bin/python -m bench.bench_services [--requests 2000] [--concurrency 16]
        [--streamed 30] [--streams 1000] [--stream-rounds 2] [--cold 3] [--no-llama]
        [--llama-runs N] [--pin]

``--pin`` puts llama.cpp alone on the last CPU (one thread) and the gateway and this client
on the others, as a compute node and the gateway's host are apart in production. Unpinned,
on two cores, llama.cpp's two threads share them with the gateway, and its first token
swings by milliseconds with whichever thread the gateway's relaying preempts. The llama.cpp
figures also give the added first token round by round (``first_token_paired``: each
routed read against the direct read just before or after it).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import shlex
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from bench.host import machine
from tests.support.accounts import give
from tests.support.backends import LLAMA_SERVER, write_llama
from tests.support.backends import PYTHON as BACKENDS_PYTHON
from tests.support.gateway_process import GatewayProcess, new_gateway
from tests.support.services import (
    SERVICES,
    admin_token,
    in_state,
    ready,
    stop_services,
    toml_string,
    wait_replicas,
)
from tests.support.tiny_gguf import MODEL_NAME

ROOT = Path(__file__).resolve().parents[1]
TARGETS_MS = {"small_get_p50": 1.0, "first_chunk_p50": 2.0, "inter_chunk_p50": 0.2}
COLD_TARGET_S = 1.0
RSS_FLAT = 0.05  # growth from the first round's end to the last's, of the first's RSS
CHUNKS = 20  # per streamed answer of the latency figures
CHUNK_INTERVAL = 0.02
MANY_CHUNKS = 10  # per stream of the many-streams figure
MANY_INTERVAL = 0.5
LLAMA_TOKENS = 32
LLAMA_PAUSE = 0.25  # seconds before each llama.cpp request (see taking_turns)


def percentile(values: list[float], q: int) -> float:
    """The ``q``-th percentile (1-99) of ``values``."""
    if len(values) < 2:
        return values[0] if values else float("nan")
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def ms(seconds: float) -> float:
    return round(seconds * 1000, 3)


def compare(direct: list[float], proxied: list[float]) -> dict[str, float]:
    """p50 and p99 of both sides, and the proxy's addition to each, in ms."""
    figures: dict[str, float] = {}
    for q in (50, 99):
        d, p = percentile(direct, q), percentile(proxied, q)
        figures |= {
            f"direct_p{q}_ms": ms(d),
            f"proxied_p{q}_ms": ms(p),
            f"added_p{q}_ms": ms(p - d),
        }
    return figures


# --- the gateway -----------------------------------------------------------------------


def _service_python() -> str:
    """A Python with uvicorn that the service's account can run: the backends tier's (made
    from the system's Python) if installed, else ours, whose interpreter may sit under a
    home the service's account cannot enter (root's, when root made the venv)."""
    return str(BACKENDS_PYTHON) if BACKENDS_PYTHON.exists() else sys.executable


def clock_script(stamps: Path | None = None) -> str:
    """A service script that runs the clock backend (stamping its start and readiness into
    ``stamps``, if given)."""
    argv = [_service_python(), "-m", "uvicorn", "bench.clock_backend:app", "--host", "127.0.0.1"]
    argv += ["--log-level", "warning", "--backlog", "4096", "--no-access-log"]
    lines = ["#!/bin/sh"]
    if stamps is not None:
        lines += [f'echo "start $(date +%s.%N)" >> {shlex.quote(str(stamps))}']
        lines += [f"export CLOCK_STAMPS={shlex.quote(str(stamps))}"]
    lines += [
        f"cd {shlex.quote(str(ROOT))}",
        f'exec {shlex.join(argv)} --port "$HPCGATE_SERVICE_PORT"',
    ]
    return "\n".join(lines) + "\n"


def gateway_config(llama: Path | None) -> str:
    text = f"""
service_wait_seconds = 120

[systems.local]
scheduler = "embedded"
slots = 8

[services.clock]
system = "local"
script = {toml_string(clock_script())}
min_replicas = 1
max_replicas = 1
target_in_flight = 100000
users = ["alice"]
run_as = "services"  # a root gateway runs a service as an account; the fallback one here
"""
    if llama is not None:
        text += f"""
[services.llama]
system = "local"
script = {toml_string(llama.read_text())}
models = [{toml_string(MODEL_NAME)}]
min_replicas = 1
max_replicas = 1
users = ["alice"]
run_as = "services"
"""
    return text


@dataclass(frozen=True)
class Bench:
    gateway: GatewayProcess
    token: str
    home: Path

    def proxied(self, service: str) -> str:
        return f"{self.gateway.url}{SERVICES}/{service}/proxy"

    def client(self, **options: Any) -> httpx.Client:
        auth = {"Authorization": f"Bearer {self.token}"}
        return httpx.Client(headers=auth, timeout=120, **options)

    def async_client(self, **options: Any) -> httpx.AsyncClient:
        auth = {"Authorization": f"Bearer {self.token}"}
        return httpx.AsyncClient(headers=auth, timeout=120, **options)

    def rss_mib(self) -> float:
        """The gateway process's resident memory now."""
        assert self.gateway.process is not None
        status = Path(f"/proc/{self.gateway.process.pid}/status").read_text()
        line = next(x for x in status.splitlines() if x.startswith("VmRSS:"))
        return round(int(line.split()[1]) / 1024, 1)


def direct_url(bench: Bench, service: str) -> str:
    """The service's ready replica, on its own port."""
    with bench.gateway.client(bench.token) as api:
        found = wait_replicas(api, service, in_state("ready"), timeout=300)
    replica = ready(found)[0]
    return f"http://{replica['address']}:{replica['port']}"


@contextlib.contextmanager
def running_gateway(directory: Path, llama: Path | None) -> Iterator[Bench]:
    gateway = new_gateway(directory / "home", gateway_config(llama))
    gateway.start()
    token = gateway.token("alice")
    try:
        yield Bench(gateway, token, gateway.home)
    finally:
        try:
            stop_services(gateway.url, admin_token(gateway.home), [token], timeout=120)
        finally:
            gateway.stop()


# --- small GETs --------------------------------------------------------------------------


#: What the gateway's own answer is asked with: no token, as a liveness probe asks (with
#: one, /api/v1/health checks it to say more).
PROBE = {"Authorization": ""}


def timed_get(client: httpx.Client, url: str) -> float:
    headers = PROBE if url.endswith("/api/v1/health") else None
    started = time.perf_counter()
    answer = client.get(url, headers=headers)
    elapsed = time.perf_counter() - started
    if answer.status_code != 200:
        raise AssertionError(f"GET {url}: {answer.status_code} {answer.text[:300]}")
    return elapsed


def sequential_gets(bench: Bench, direct: str, count: int) -> dict[str, float]:
    """Direct and proxied GETs taking turns, one at a time, each on a kept-alive
    connection; and the gateway's own cheapest answer (``/api/v1/health``: no token, no
    database), the floor of its HTTP stack, taking turns with them."""
    urls = {
        "direct": f"{direct}/small",
        "proxied": f"{bench.proxied('clock')}/small",
        "own": f"{bench.gateway.url}/api/v1/health",
    }
    times: dict[str, list[float]] = {side: [] for side in urls}
    with bench.client() as client:
        for _ in range(20):  # warm the connections
            for url in urls.values():
                timed_get(client, url)
        for _ in range(count):
            for side, url in urls.items():
                times[side].append(timed_get(client, url))
    own = percentile(times["own"], 50) - percentile(times["direct"], 50)
    return compare(times["direct"], times["proxied"]) | {"gateway_own_added_p50_ms": ms(own)}


async def _get_loop(client: httpx.AsyncClient, url: str, count: int, out: list[float]) -> None:
    for _ in range(count):
        started = time.perf_counter()
        answer = await client.get(url)
        out.append(time.perf_counter() - started)
        if answer.status_code != 200:
            raise AssertionError(f"GET {url}: {answer.status_code} {answer.text[:300]}")


async def concurrent_gets(
    bench: Bench, direct: str, count: int, concurrency: int
) -> dict[str, float]:
    """``concurrency`` clients at once; direct and proxied phases take turns (4 each)."""
    times: dict[str, list[float]] = {"direct": [], "proxied": []}
    urls = {"direct": f"{direct}/small", "proxied": f"{bench.proxied('clock')}/small"}
    each = max(1, count // (4 * concurrency))
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with bench.async_client(limits=limits) as client:
        for phase in range(9):  # the first, a warm-up of the direct side, is not counted
            side = "direct" if phase % 2 == 0 else "proxied"
            sink: list[float] = [] if phase == 0 else times[side]
            loops = [_get_loop(client, urls[side], each, sink) for _ in range(concurrency)]
            await asyncio.gather(*loops)
    return {"concurrency": concurrency, **compare(times["direct"], times["proxied"])}


def cpu_seconds(pid: int) -> float:
    """The process's CPU time so far (user and system, all its threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def gateway_cpu(bench: Bench, count: int, rounds: int = 3) -> dict[str, float]:
    """The gateway's CPU time per proxied small GET and per ``/api/v1/health`` (its HTTP
    stack alone), in rounds that take turns; medians. Unlike latency, CPU time hardly
    depends on what else the machine runs, so runs on a loaded machine compare."""
    assert bench.gateway.process is not None
    pid = bench.gateway.process.pid
    urls = {
        "proxied": f"{bench.proxied('clock')}/small",
        "health": f"{bench.gateway.url}/api/v1/health",
    }
    per: dict[str, list[float]] = {side: [] for side in urls}
    with bench.client() as client:
        for _ in range(rounds):
            for side, url in urls.items():
                before = cpu_seconds(pid)
                for _ in range(count):
                    timed_get(client, url)
                per[side].append((cpu_seconds(pid) - before) / count)
    proxied, health = statistics.median(per["proxied"]), statistics.median(per["health"])
    return {
        "requests_per_round": count,
        "proxied_us": round(proxied * 1e6),
        "health_us": round(health * 1e6),
        "proxy_own_us": round((proxied - health) * 1e6),
    }


# --- streamed answers --------------------------------------------------------------------


@dataclass
class StreamTimes:
    """One streamed answer as read: when its first byte came, the gaps between chunks, and
    how long each stamped chunk took from the replica to the reader."""

    first: float
    gaps: list[float]
    delivery: list[float]


def read_clock_stream(client: httpx.Client, url: str) -> StreamTimes:
    started = time.perf_counter()
    arrivals: list[float] = []
    delivery: list[float] = []
    pending = b""
    with client.stream("GET", url) as answer:
        if answer.status_code != 200:
            raise AssertionError(f"GET {url}: {answer.status_code}")
        for data in answer.iter_raw():
            now, wall = time.perf_counter(), time.time()
            *lines, pending = (pending + data).split(b"\n")
            for line in lines:
                arrivals.append(now)
                delivery.append(wall - float(line.split()[1]))
    if len(arrivals) != CHUNKS:
        raise AssertionError(f"{len(arrivals)} chunks of {CHUNKS} from {url}")
    gaps = [b - a for a, b in itertools.pairwise(arrivals)]
    return StreamTimes(arrivals[0] - started, gaps, delivery)


def stream_figures(direct: list[StreamTimes], proxied: list[StreamTimes]) -> dict[str, Any]:
    def p50(runs: list[StreamTimes], pick: Callable[[StreamTimes], list[float]]) -> float:
        return percentile([v for run in runs for v in pick(run)], 50)

    picks: dict[str, Callable[[StreamTimes], list[float]]] = {
        "first_chunk": lambda run: [run.first],
        "inter_chunk": lambda run: run.gaps,
        "chunk_delivery": lambda run: run.delivery,
    }
    figures: dict[str, Any] = {}
    for name, pick in picks.items():
        d, p = p50(direct, pick), p50(proxied, pick)
        figures[name] = {"direct_p50_ms": ms(d), "proxied_p50_ms": ms(p), "added_p50_ms": ms(p - d)}
    return figures


def taking_turns(
    bench: Bench,
    urls: dict[str, str],
    read: Callable[[httpx.Client, str], StreamTimes],
    runs: int,
    pause: float = 0.0,
) -> dict[str, list[StreamTimes]]:
    """``runs`` streams read from each side's URL, the sides taking turns after one
    unmeasured read of each (a warm connection and replica). Each round starts with the next
    side, so none always follows the same one; ``pause`` seconds before each read let a
    backend settle after the previous answer (llama.cpp closes each stream's connection and
    takes a moment before its next request is as quick as a first)."""
    times: dict[str, list[StreamTimes]] = {side: [] for side in urls}
    sides = list(urls)
    with bench.client() as client:
        for url in urls.values():
            read(client, url)
        for round_ in range(runs):
            for side in sides[round_ % len(sides) :] + sides[: round_ % len(sides)]:
                time.sleep(pause)
                times[side].append(read(client, urls[side]))
    return times


def streamed(bench: Bench, direct: str, runs: int) -> dict[str, Any]:
    """Streamed answers of CHUNKS chunks CHUNK_INTERVAL apart, direct and proxied taking
    turns."""
    query = f"/stream?n={CHUNKS}&interval={CHUNK_INTERVAL}"
    urls = {"direct": direct + query, "proxied": bench.proxied("clock") + query}
    times = taking_turns(bench, urls, read_clock_stream, runs)
    return {"chunks": CHUNKS, "interval_ms": ms(CHUNK_INTERVAL), "runs": runs} | stream_figures(
        times["direct"], times["proxied"]
    )


def read_llama_stream(client: httpx.Client, base: str) -> StreamTimes:
    """One streamed chat completion: when the first token came, and the gaps between the
    reads that brought tokens (the tiny model makes several per read at times)."""
    body = {
        "model": MODEL_NAME,
        "messages": [{"role": "user", "content": "Count from one to forty."}],
        "max_tokens": LLAMA_TOKENS,
        "stream": True,
    }
    started = time.perf_counter()
    arrivals: list[float] = []
    with client.stream("POST", f"{base}/v1/chat/completions", json=body) as answer:
        if answer.status_code != 200:
            raise AssertionError(f"llama: {answer.status_code} {answer.read()[:300]!r}")
        for data in answer.iter_raw():
            if b'"content"' in data:
                arrivals.append(time.perf_counter())
    if not arrivals:
        raise AssertionError("llama streamed no token")
    gaps = [b - a for a, b in itertools.pairwise(arrivals)]
    return StreamTimes(arrivals[0] - started, gaps, [])


def llama_streamed(bench: Bench, runs: int) -> dict[str, Any]:
    """Through the service's proxy and through ``/v1`` (routed by model, usage metered),
    each against the direct call, the three taking turns."""
    urls = {
        "direct": direct_url(bench, "llama"),
        "proxied": bench.proxied("llama"),
        "v1": bench.gateway.url,
    }
    times = taking_turns(bench, urls, read_llama_stream, runs, pause=LLAMA_PAUSE)
    figures: dict[str, Any] = {"max_tokens": LLAMA_TOKENS, "runs": runs, "pause_s": LLAMA_PAUSE}
    for route in ("proxied", "v1"):
        figures[route] = stream_figures(times["direct"], times[route])
        figures[route].pop("chunk_delivery")
        figures[route]["first_token_paired"] = paired(times["direct"], times[route])
    return figures


def paired(direct: list[StreamTimes], routed: list[StreamTimes]) -> dict[str, float]:
    """The first token's added time round by round (each routed read against the direct
    read of its own round, moments apart): quartiles of those differences, so that the
    backend's drift over the run cancels instead of landing on one side's median."""
    added = [r.first - d.first for d, r in zip(direct, routed, strict=True)]
    q1, q2, q3 = statistics.quantiles(added, n=4)
    return {"p25_ms": ms(q1), "p50_ms": ms(q2), "p75_ms": ms(q3)}


# --- many streams at once ----------------------------------------------------------------


async def one_stream(client: httpx.AsyncClient, url: str, deadline: float) -> str | None:
    """None if the whole answer came, in order and in time; else what went wrong."""
    try:
        async with asyncio.timeout_at(deadline):
            async with client.stream("GET", url) as answer:
                if answer.status_code != 200:
                    return f"status {answer.status_code}"
                body = await answer.aread()
    except Exception as exc:  # every failure is counted, whatever it is
        return type(exc).__name__
    indices = [int(line.split()[0]) for line in body.splitlines()]
    return None if indices == list(range(MANY_CHUNKS)) else f"{len(indices)} chunks"


async def sample_rss(bench: Bench, into: list[float], stop: asyncio.Event) -> None:
    while not stop.is_set():
        into.append(bench.rss_mib())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.25)


async def streams_at_once(
    client: httpx.AsyncClient, url: str, count: int
) -> tuple[list[str], float]:
    """``count`` streamed answers at once: what went wrong with each that failed, and the
    seconds until the last ended (each is due to take MANY_CHUNKS * MANY_INTERVAL)."""
    started = time.monotonic()
    deadline = asyncio.get_running_loop().time() + MANY_CHUNKS * MANY_INTERVAL + 60
    outcomes = await asyncio.gather(*(one_stream(client, url, deadline) for _ in range(count)))
    return [o for o in outcomes if o is not None], round(time.monotonic() - started, 2)


def _limits(count: int) -> httpx.Limits:
    return httpx.Limits(max_connections=count, max_keepalive_connections=count)


async def many_streams_round(bench: Bench, count: int) -> dict[str, Any]:
    url = f"{bench.proxied('clock')}/stream?n={MANY_CHUNKS}&interval={MANY_INTERVAL}"
    before = bench.rss_mib()
    samples: list[float] = []
    stop = asyncio.Event()
    async with bench.async_client(limits=_limits(count)) as client:
        sampler = asyncio.create_task(sample_rss(bench, samples, stop))
        failures, seconds = await streams_at_once(client, url, count)
        stop.set()
        await sampler
    await asyncio.sleep(2)  # let the gateway settle
    return {
        "seconds": seconds,
        "dropped_or_broken": len(failures),
        "failures": sorted(set(failures))[:10],
        "rss_mib": {"before": before, "peak_during": max(samples), "after": bench.rss_mib()},
    }


async def many_streams(bench: Bench, direct: str, count: int, rounds: int) -> dict[str, Any]:
    """A direct round (the client's and the replica's own pace), then ``rounds`` through
    the gateway; RSS growth is from the end of the first round (connections and buffers
    made) to the end of the last: flat is about 0."""
    url = f"{direct}/stream?n={MANY_CHUNKS}&interval={MANY_INTERVAL}"
    async with httpx.AsyncClient(timeout=120, limits=_limits(count)) as client:
        failures, seconds = await streams_at_once(client, url, count)
    done = [await many_streams_round(bench, count) for _ in range(rounds)]
    growth = done[-1]["rss_mib"]["after"] - done[0]["rss_mib"]["after"]
    return {
        "streams": count,
        "chunks": MANY_CHUNKS,
        "interval_ms": ms(MANY_INTERVAL),
        "direct": {"seconds": seconds, "dropped_or_broken": len(failures)},
        "rounds": done,
        "dropped_or_broken": sum(r["dropped_or_broken"] for r in done),
        "rss_growth_after_first_round_mib": round(growth, 1),
    }


# --- cold start --------------------------------------------------------------------------


def stamps_of(path: Path) -> dict[str, float]:
    return {
        word: float(value)
        for word, value in (line.split() for line in path.read_text().splitlines())
    }


def job_times(api: httpx.Client, name: str) -> tuple[float, float]:
    """The replica's job's submit and start time, as the scheduler gave them."""
    replica = api.get(f"{SERVICES}/{name}").json()["replicas"][0]
    job = api.get(f"/api/v1/systems/local/jobs/{replica['job_id']}").json()
    parse = datetime.fromisoformat
    return parse(job["submit_time"]).timestamp(), parse(job["start_time"]).timestamp()


def one_cold_start(bench: Bench, api: httpx.Client, index: int) -> dict[str, float]:
    name = f"cold{index}"
    stamps = bench.home / f"{name}.stamps"
    stamps.touch()
    give(stamps, "alice")  # a root gateway runs alice's service as alice: she writes it
    spec = {"name": name, "system": "local", "script": clock_script(stamps)}
    made = api.post(SERVICES, json=spec | {"min_replicas": 0, "max_replicas": 1})
    assert made.status_code in (200, 201), made.text
    asked = time.time()
    answer = api.get(f"{bench.proxied(name)}/small", timeout=300)
    answered = time.time()
    assert answer.status_code == 200, answer.text
    submitted, started = job_times(api, name)
    stamp = stamps_of(stamps)
    floor = (started - submitted) + (stamp["ready"] - stamp["start"])
    api.delete(f"{SERVICES}/{name}")
    return {
        "total_s": round(answered - asked, 3),
        "job_and_backend_s": round(floor, 3),
        "added_s": round(answered - asked - floor, 3),
        "request_to_submit_s": round(submitted - asked, 3),
        "ready_to_answer_s": round(answered - stamp["ready"], 3),
    }


def wait_gone(api: httpx.Client, name: str) -> None:
    deadline = time.monotonic() + 120
    while api.get(f"{SERVICES}/{name}").status_code != 404:
        assert time.monotonic() < deadline, f"service {name} never went away"
        time.sleep(0.2)


def cold_starts(bench: Bench, runs: int) -> dict[str, Any]:
    done = []
    with bench.gateway.client(bench.token) as api:
        for index in range(runs):
            done.append(one_cold_start(bench, api, index))
            wait_gone(api, f"cold{index}")
    added = [run["added_s"] for run in done]
    return {"runs": done, "added_s_median": round(statistics.median(added), 3)}


# --- the run -----------------------------------------------------------------------------


def targets(results: dict[str, Any]) -> dict[str, bool]:
    """Which of the issue's targets this run met."""
    small = results["small_get"]["sequential"]["added_p50_ms"]
    stream = results["streamed"]
    met = {
        "small_get_p50": small <= TARGETS_MS["small_get_p50"],
        "first_chunk_p50": stream["first_chunk"]["added_p50_ms"] <= TARGETS_MS["first_chunk_p50"],
        "inter_chunk_p50": stream["inter_chunk"]["added_p50_ms"] <= TARGETS_MS["inter_chunk_p50"],
    }
    if "llama" in results:
        llama = results["llama"]
        met["llama_first_token_p50"] = all(
            llama[route]["first_chunk"]["added_p50_ms"] <= TARGETS_MS["first_chunk_p50"]
            for route in ("proxied", "v1")
        )
    if "many_streams" in results:
        many = results["many_streams"]
        met["streams_none_dropped"] = many["dropped_or_broken"] == 0
        settled = many["rounds"][0]["rss_mib"]["after"]
        met["streams_rss_flat"] = many["rss_growth_after_first_round_mib"] <= RSS_FLAT * settled
    if "cold_start" in results:
        met["cold_start"] = results["cold_start"]["added_s_median"] <= COLD_TARGET_S
    return met


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.bench_services", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--requests", type=int, default=2000, help="small GETs per side")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--streamed", type=int, default=30, help="streamed answers per side")
    parser.add_argument("--streams", type=int, default=1000, help="streams at once (0: none)")
    parser.add_argument("--stream-rounds", type=int, default=2)
    parser.add_argument("--cold", type=int, default=3, help="cold starts (0: none)")
    parser.add_argument("--no-llama", action="store_true", help="leave llama.cpp out")
    parser.add_argument(
        "--llama-runs", type=int, default=0, help="llama.cpp streams per side (default: streamed/3)"
    )
    parser.add_argument(
        "--pin",
        action="store_true",
        help="llama.cpp on the last CPU with one thread, the gateway and this client on the others",
    )
    return parser.parse_args()


Step = Callable[[], Any]


def run_all(bench: Bench, args: argparse.Namespace, llama: bool) -> dict[str, Any]:
    direct = direct_url(bench, "clock")
    steps: dict[str, Step] = {
        "small_get": lambda: {
            "sequential": sequential_gets(bench, direct, args.requests),
            "concurrent": asyncio.run(
                concurrent_gets(bench, direct, args.requests, args.concurrency)
            ),
            "gateway_cpu": gateway_cpu(bench, max(100, args.requests // 2)),
        },
        "streamed": lambda: streamed(bench, direct, args.streamed),
    }
    if llama:
        runs = args.llama_runs or max(3, args.streamed // 3)
        steps["llama"] = lambda: llama_streamed(bench, runs)
    if args.streams:
        steps["many_streams"] = lambda: asyncio.run(
            many_streams(bench, direct, args.streams, args.stream_rounds)
        )
    if args.cold:
        steps["cold_start"] = lambda: cold_starts(bench, args.cold)
    results: dict[str, Any] = {}
    for name, step in steps.items():
        print(f"bench_services: {name}...", file=sys.stderr, flush=True)
        results[name] = step()
    return results


def llama_script(directory: Path, pin: bool) -> Path:
    """llama.cpp's job script: as the tests run it, or (``pin``) alone on the last CPU with
    one thread while this process, and so the gateway it starts, keeps to the others: a
    compute node and the gateway's host are apart in production, and on two shared cores
    llama.cpp's threads wait at each step for the one the gateway preempted."""
    if not pin:
        return write_llama(directory).script
    last = max(os.sched_getaffinity(0))
    others = os.sched_getaffinity(0) - {last}
    if not others:
        raise SystemExit("--pin needs two CPUs or more")
    os.sched_setaffinity(0, others)
    return write_llama(directory, threads=1, cpus=str(last)).script


def main() -> None:
    args = parse_args()
    llama = not args.no_llama and LLAMA_SERVER.exists()
    results: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "llama": "measured" if llama else "left out (not installed, or --no-llama)",
        "pinned": args.pin,
    }
    with tempfile.TemporaryDirectory(prefix="hpcgate-bench-services-") as name:
        directory = Path(name)
        directory.chmod(0o755)
        script = llama_script(directory / "llama", args.pin) if llama else None
        with running_gateway(directory, script) as bench:
            results |= run_all(bench, args, llama)
    results["targets_met"] = targets(results)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
