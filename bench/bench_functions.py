"""Functions benchmark: invoking through the gateway against calling the worker directly.

Starts a real gateway (embedded scheduler, local transport, SQLite) in a temporary home and
registers alice's function ``stamps`` (``concurrency = "async"``), whose every yield is
``"<i> <time.time_ns()>"``: the worker's own clock, the machine's. Through the gateway an
invocation is ``POST /api/v1/functions/stamps/invoke`` with ``Accept: text/event-stream``;
the raw thing is the worker's own HTTP API on its port (``POST /invocations``, then
``GET /invocations/ID/events`` as NDJSON), which the gateway itself speaks. Measured, in
one run, the two sides taking turns:

* (a) per-chunk latency: yields ``--gap-ms`` apart; each chunk's receipt by the client
  (``time.time_ns()``) minus its yield stamp, p50/p99; the figure is gateway minus direct;
* (b) one stream's throughput: ``--chunks`` yields as fast as the worker makes them,
  chunks/s each side (the client reads raw bytes and counts lines);
* (c) ``--streams`` invocations held open at once through the gateway (each has its first
  chunk, then waits for a release file; ``--streams`` / 1,000 workers, rounded up): the
  gateway's and the workers' RSS at 1k, 5k, 10k open (or the steps ``--streams`` reaches),
  again after holding ``--hold`` seconds, and after release; every stream must end with its
  own result. A held stream costs the gateway one descriptor (its client's connection:
  each worker's events come over one connection for all its invocations), the bench
  process one (its side of it): the bench raises RLIMIT_NOFILE where it may (the gateway
  inherits it; raising the hard limit needs CAP_SYS_RESOURCE), and ``hpcgate serve``
  raises its soft limit to the hard one;
* (d) warm invocation: POST to the first event, p50/p99, against a direct POST to the worker
  followed by its events request.

Targets (issue 16): (a) p50 <= 1 ms and p99 <= 3 ms added; (b) >= 50,000 chunks/s through
the gateway; (c) 10,000 open with flat memory; (d) p50 <= 5 ms. The client is Python, on
the same two cores as the gateway and the worker: it costs both sides alike.

Usage, from the repository root (as root: the gateway runs the workers as alice):
    .venv/bin/python -m bench.bench_functions [--latency-runs 20] [--chunks 100000]
        [--streams 10000] [--hold 10] [--invokes 300]
    .venv/bin/python -m bench.bench_functions --quick      # the small sizes: < 1 minute
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import re
import resource
import secrets
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from bench.bench_services import ms, percentile
from bench.host import machine
from tests.support.functions import FUNCTIONS, delete_all
from tests.support.gateway_process import GatewayProcess, new_gateway
from tests.support.services import SYSTEM_PYTHON

TARGETS = {"added_p50_ms": 1.0, "added_p99_ms": 3.0, "chunks_per_s": 50_000, "invoke_p50_ms": 5.0}
FILES = 65536  # RLIMIT_NOFILE for the bench and the gateway it starts
PER_WORKER = 1000  # invocations one worker runs at once (the most a function may ask)
RSS_FLAT = 0.05  # growth while held, of the RSS at the start of the hold
STAMP = re.compile(rb'"(\d+) (\d+)"')

#: The function: a yield per chunk, stamped; ``release``: once the first chunk is out,
#: wait until that file exists (one poller per worker, whatever the number waiting).
SOURCE = """
import asyncio
import os
import time

_released = {}

async def _poll(path, event):
    while not os.path.exists(path):
        await asyncio.sleep(0.2)
    event.set()

async def stamps(count=1, gap=0.0, release=None):
    for i in range(count):
        yield f"{i} {time.time_ns()}"
        if gap:
            await asyncio.sleep(gap)
    if release:
        if release not in _released:
            _released[release] = asyncio.Event()
            asyncio.ensure_future(_poll(release, _released[release]))
        await _released[release].wait()
"""


def compare(direct: list[float], gateway: list[float]) -> dict[str, float]:
    figures: dict[str, float] = {"samples": len(gateway)}
    for q in (50, 99):
        d, g = percentile(direct, q), percentile(gateway, q)
        figures |= {
            f"direct_p{q}_ms": ms(d),
            f"gateway_p{q}_ms": ms(g),
            f"added_p{q}_ms": ms(g - d),
        }
    return figures


# --- the gateway and its function ---------------------------------------------------------


def gateway_config(workers: int) -> str:
    return f"""
service_interval = 0.2
service_wait_seconds = 120

[systems.local]
scheduler = "embedded"
status_interval = 0.2
slots = {max(8, workers + 2)}

[service_limits]
replicas_per_service = {max(16, workers)}
"""


@dataclass(frozen=True)
class Bench:
    gateway: GatewayProcess
    token: str
    directory: Path
    direct: str  # the worker's base URL
    workers: int
    secret: str | None = None  # what the pool's workers want shown (the gateway sends it)

    @property
    def invoke_url(self) -> str:
        return f"{self.gateway.url}{FUNCTIONS}/stamps/invoke"

    def client(self) -> httpx.Client:
        """For the gateway and, the worker's secret shown as the gateway shows it, the
        worker itself."""
        headers = {"Authorization": f"Bearer {self.token}"}
        if self.secret:
            headers["X-Hpcgate-Worker-Secret"] = self.secret
        return httpx.Client(headers=headers, timeout=120)


def worker_secret(gateway: GatewayProcess, name: str) -> str | None:
    """The pool's secret, as the gateway keeps it (the direct side needs it too)."""
    with contextlib.closing(sqlite3.connect(gateway.home / "hpcgate.db")) as db:
        found = db.execute("SELECT worker_secret FROM functions WHERE name = ?", (name,))
        row = found.fetchone()
    return row[0] if row else None


def raise_file_limit() -> int:
    """RLIMIT_NOFILE raised to :data:`FILES` (as root the hard limit too); the soft limit now."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = max(soft, FILES)
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, max(hard, want)))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def register(client: httpx.Client, url: str, workers: int) -> str:
    body = {
        "name": "stamps",
        "system": "local",
        "source": SOURCE,
        "callable": "stamps",
        "python": SYSTEM_PYTHON,
        "concurrency": "async",
        "max_concurrency": PER_WORKER,
        "min_workers": workers,
        "max_workers": workers,
        "idle_seconds": 3600,
    }
    answer = client.post(f"{url}{FUNCTIONS}", json=body)
    assert answer.status_code == 201, answer.text
    deadline = time.monotonic() + 300
    while True:
        found = client.get(f"{url}{FUNCTIONS}/stamps").json()["workers"]
        ready = [w for w in found if w["state"] == "ready"]
        if len(ready) == workers:
            return f"http://{ready[0]['address']}:{ready[0]['port']}"
        assert time.monotonic() < deadline, f"workers never all ready: {found}"
        time.sleep(0.3)


def start_patiently(gateway: GatewayProcess, seconds: float = 300) -> None:
    """Started, allowing a loaded machine more than the tests' 30 s to import it."""
    try:
        gateway.start()
    except TimeoutError:
        deadline = time.monotonic() + seconds
        while not _answers(gateway.url):
            if time.monotonic() > deadline:
                gateway.stop()
                raise
            time.sleep(0.5)


def _answers(url: str) -> bool:
    with contextlib.suppress(httpx.TransportError):
        return httpx.get(f"{url}/api/v1/health", timeout=5).status_code == 200
    return False


@contextlib.contextmanager
def running(directory: Path, workers: int) -> Iterator[Bench]:
    gateway = new_gateway(directory / "home", gateway_config(workers))
    start_patiently(gateway)
    token = gateway.token("alice")
    try:
        with httpx.Client(headers={"Authorization": f"Bearer {token}"}, timeout=60) as api:
            direct = register(api, gateway.url, workers)
            secret = worker_secret(gateway, "stamps")
            yield Bench(gateway, token, directory, direct, workers, secret)
    finally:
        try:
            with gateway.client(token) as api:
                delete_all(api, timeout=120)
        finally:
            gateway.stop()


# --- memory --------------------------------------------------------------------------------


def rss_mib(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    line = next(x for x in status.splitlines() if x.startswith("VmRSS:"))
    return round(int(line.split()[1]) / 1024, 1)


def listening_inodes(ports: set[int]) -> set[str]:
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) in ports:
                inodes.add(f"socket:[{fields[9]}]")
    return inodes


def pids_listening(ports: set[int]) -> list[int]:
    """The processes that listen on ``ports`` (the workers)."""
    inodes = listening_inodes(ports)
    found = set()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            if any(os.readlink(fd) in inodes for fd in (proc / "fd").iterdir()):
                found.add(int(proc.name))
    return sorted(found)


def worker_pids(bench: Bench) -> list[int]:
    with bench.client() as api:
        found = api.get(f"{bench.gateway.url}{FUNCTIONS}/stamps").json()["workers"]
    return pids_listening({w["port"] for w in found if w["state"] == "ready"})


def memory(bench: Bench, workers: list[int]) -> dict[str, float]:
    assert bench.gateway.process is not None
    return {
        "gateway_rss_mib": rss_mib(bench.gateway.process.pid),
        "workers_rss_mib": round(sum(rss_mib(pid) for pid in workers), 1),
    }


# --- one stream: a small client of its own, on raw bytes ----------------------------------


@dataclass
class Read:
    """One invocation read to its end: when each stamped chunk came (ns), its stamp, and
    when the first chunk came."""

    started: int
    received: list[tuple[int, int]]
    lines: int

    @property
    def first_ms(self) -> float:
        return (self.received[0][0] - self.started) / 1e6


def _count(pending: bytes, data: bytes, marker: bytes) -> tuple[bytes, int]:
    *lines, rest = (pending + data).split(b"\n")
    return rest, sum(1 for line in lines if line.startswith(marker))


def read_stamps(answer: httpx.Response, started: int, first_only: bool = False) -> Read:
    """The stamped chunks of a response as they arrive (SSE or NDJSON alike)."""
    received: list[tuple[int, int]] = []
    pending = b""
    for data in answer.iter_raw():
        now = time.time_ns()
        *lines, pending = (pending + data).split(b"\n")
        for line in lines:
            if found := STAMP.search(line):
                received.append((now, int(found.group(2))))
        if first_only and received:
            break
    return Read(started, received, len(received))


def invoke_gateway(client: httpx.Client, bench: Bench, value: dict[str, Any], **kw: Any) -> Read:
    started = time.time_ns()
    headers = {"Accept": "text/event-stream"}
    with client.stream("POST", bench.invoke_url, json=value, headers=headers) as answer:
        assert answer.status_code == 200, answer.read()
        return read_stamps(answer, started, **kw)


def invoke_direct(client: httpx.Client, bench: Bench, value: dict[str, Any], **kw: Any) -> Read:
    started = time.time_ns()
    key = secrets.token_urlsafe(16)
    made = client.post(f"{bench.direct}/invocations", json={"id": key, "input": value})
    assert made.status_code == 201, made.text
    with client.stream("GET", f"{bench.direct}/invocations/{key}/events?after=0") as answer:
        assert answer.status_code == 200, answer.read()
        return read_stamps(answer, started, **kw)


def latency(bench: Bench, runs: int, count: int, gap_ms: float) -> dict[str, Any]:
    """(a) each chunk's yield-to-receipt time, the sides taking turns run by run."""
    value = {"count": count, "gap": gap_ms / 1000}
    times: dict[str, list[float]] = {"direct": [], "gateway": []}
    sides = {"direct": invoke_direct, "gateway": invoke_gateway}
    with bench.client() as client:
        for run in range(runs + 1):  # the first of each: a warm-up
            for side, invoke in sides.items():
                read = invoke(client, bench, value)
                assert read.lines == count, f"{side}: {read.lines} chunks of {count}"
                if run:
                    times[side] += [(got - stamp) / 1e9 for got, stamp in read.received]
    return {"chunks_per_run": count, "gap_ms": gap_ms, "runs": runs} | compare(
        times["direct"], times["gateway"]
    )


def count_lines(answer: httpx.Response, marker: bytes) -> int:
    pending, total = b"", 0
    for data in answer.iter_raw():
        pending, found = _count(pending, data, marker)
        total += found
    return total


def one_stream(client: httpx.Client, bench: Bench, side: str, chunks: int) -> float:
    """Chunks per second of one invocation yielding ``chunks`` as fast as it can."""
    value = {"count": chunks}
    started = time.perf_counter()
    if side == "gateway":
        headers = {"Accept": "text/event-stream"}
        with client.stream("POST", bench.invoke_url, json=value, headers=headers) as answer:
            got = count_lines(answer, b"event: output")
    else:
        key = secrets.token_urlsafe(16)
        client.post(f"{bench.direct}/invocations", json={"id": key, "input": value})
        with client.stream("GET", f"{bench.direct}/invocations/{key}/events?after=0") as answer:
            got = count_lines(answer, b'{"seq"')
    elapsed = time.perf_counter() - started
    expected = chunks if side == "gateway" else chunks + 1  # NDJSON: the result is a line too
    assert got == expected, f"{side}: {got} lines, {expected} expected"
    return chunks / elapsed


def throughput(bench: Bench, chunks: int, runs: int) -> dict[str, Any]:
    """(b) one stream's chunks/s, the sides taking turns; medians."""
    rates: dict[str, list[float]] = {"direct": [], "gateway": []}
    with bench.client() as client:
        for side in rates:
            one_stream(client, bench, side, min(chunks, 5000))  # warm-up
        for _ in range(runs):
            for side in rates:
                rates[side].append(one_stream(client, bench, side, chunks))
    direct, gateway = statistics.median(rates["direct"]), statistics.median(rates["gateway"])
    return {
        "chunks": chunks,
        "runs": runs,
        "direct_chunks_per_s": round(direct),
        "gateway_chunks_per_s": round(gateway),
        "ratio": round(gateway / direct, 3),
    }


def first_event(bench: Bench, runs: int) -> dict[str, Any]:
    """(d) POST to the first event on a warm worker, the sides taking turns."""
    times: dict[str, list[float]] = {"direct": [], "gateway": []}
    sides = {"direct": invoke_direct, "gateway": invoke_gateway}
    with bench.client() as client:
        for run in range(runs + 10):
            for side, invoke in sides.items():
                read = invoke(client, bench, {"count": 1}, first_only=True)
                if run >= 10:
                    times[side].append(read.first_ms / 1000)
    return {"runs": runs} | compare(times["direct"], times["gateway"])


# --- many streams held open at once ---------------------------------------------------------


@dataclass
class Held:
    """One invocation held open on a raw connection, after its first chunk."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    seen: bytes


async def open_one(bench: Bench, body: bytes) -> Held:
    host, port = "127.0.0.1", bench.gateway.port
    reader, writer = await asyncio.open_connection(host, port)
    head = (
        f"POST {FUNCTIONS}/stamps/invoke HTTP/1.1\r\nHost: {host}:{port}\r\n"
        f"Authorization: Bearer {bench.token}\r\nAccept: text/event-stream\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    writer.write(head.encode() + body)
    seen = b""
    while b"event: output" not in seen:
        data = await reader.read(65536)
        if not data:
            raise ConnectionError(f"closed before the first chunk: {seen[:200]!r}")
        seen += data
    if not seen.startswith(b"HTTP/1.1 200"):
        raise ConnectionError(seen[:200].decode(errors="replace"))
    return Held(reader, writer, seen)


async def finish_one(held: Held) -> bool:
    """Whether the held stream ended (its chunked body's last chunk) with its result."""
    seen = held.seen
    try:
        while not seen.endswith(b"\r\n0\r\n\r\n"):
            data = await held.reader.read(65536)
            if not data:
                break
            seen += data
    finally:
        held.writer.close()
    return b"event: result" in seen and b"event: error" not in seen


async def open_many(bench: Bench, body: bytes, count: int, into: list[Held]) -> list[str]:
    """``count`` more held streams, 200 being opened at a time; the failures."""
    failures: list[str] = []
    gate = asyncio.Semaphore(200)

    async def one() -> None:
        async with gate:
            try:
                into.append(await asyncio.wait_for(open_one(bench, body), 120))
            except Exception as exc:  # every failure is counted, whatever it is
                failures.append(f"{type(exc).__name__}: {str(exc)[:120]}")

    await asyncio.gather(*(one() for _ in range(count)))
    return failures


def steps_to(total: int) -> list[int]:
    marks = [m for m in (1000, 5000, 10000) if m < total]
    return [*marks, total]


async def many_streams(bench: Bench, total: int, hold: float) -> dict[str, Any]:
    """(c) ``total`` invocations held open through the gateway, memory at each step."""
    release = bench.directory / f"release-{secrets.token_hex(4)}"
    body = json.dumps({"count": 1, "release": str(release)}).encode()
    workers = worker_pids(bench)
    held: list[Held] = []
    samples = {"0": memory(bench, workers)}
    failures: list[str] = []
    started = time.monotonic()
    for mark in steps_to(total):
        failures += await open_many(bench, body, mark - len(held) - len(failures), held)
        samples[str(mark)] = memory(bench, workers) | {"open": len(held)}
    opened_s = time.monotonic() - started
    await asyncio.sleep(hold)
    samples["held"] = memory(bench, workers) | {"open": len(held)}
    release.touch()
    ended = await asyncio.gather(*(finish_one(h) for h in held))
    await asyncio.sleep(2)
    samples["released"] = memory(bench, workers)
    return _many_figures(total, hold, opened_s, samples, failures, ended)


def _many_figures(
    total: int,
    hold: float,
    opened_s: float,
    samples: dict[str, dict[str, Any]],
    failures: list[str],
    ended: list[bool],
) -> dict[str, Any]:
    last = samples[str(total)]
    base = samples["0"]
    per_stream = (last["gateway_rss_mib"] - base["gateway_rss_mib"]) * 1024 / max(1, last["open"])
    growth = samples["held"]["gateway_rss_mib"] - last["gateway_rss_mib"]
    return {
        "streams": total,
        "opened_in_s": round(opened_s, 1),
        "hold_s": hold,
        "failed_to_open": len(failures),
        "failures": sorted(set(failures))[:5],
        "ended_with_result": sum(ended),
        "memory": samples,
        "gateway_kib_per_stream": round(per_stream, 1),
        "gateway_growth_while_held_mib": round(growth, 1),
    }


# --- the run -------------------------------------------------------------------------------


def targets(results: dict[str, Any]) -> dict[str, bool]:
    met: dict[str, bool] = {}
    if "latency" in results:
        met["added_p50"] = results["latency"]["added_p50_ms"] <= TARGETS["added_p50_ms"]
        met["added_p99"] = results["latency"]["added_p99_ms"] <= TARGETS["added_p99_ms"]
    if "throughput" in results:
        met["chunks_per_s"] = (
            results["throughput"]["gateway_chunks_per_s"] >= TARGETS["chunks_per_s"]
        )
    if "many_streams" in results:
        many = results["many_streams"]
        base = many["memory"][str(many["streams"])]["gateway_rss_mib"]
        met["streams_all_open_and_ended"] = many["ended_with_result"] == many["streams"]
        met["streams_rss_flat"] = many["gateway_growth_while_held_mib"] <= RSS_FLAT * base
    if "first_event" in results:
        met["invoke_p50"] = results["first_event"]["gateway_p50_ms"] <= TARGETS["invoke_p50_ms"]
    return met


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.bench_functions", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--latency-runs", type=int, default=20, help="(a) runs per side")
    parser.add_argument("--latency-chunks", type=int, default=100, help="(a) chunks per run")
    parser.add_argument("--gap-ms", type=float, default=2.0, help="(a) between yields")
    parser.add_argument("--chunks", type=int, default=100_000, help="(b) chunks per stream")
    parser.add_argument("--throughput-runs", type=int, default=3, help="(b) runs per side")
    parser.add_argument("--streams", type=int, default=10_000, help="(c) held open (0: none)")
    parser.add_argument("--hold", type=float, default=10.0, help="(c) seconds held")
    parser.add_argument("--invokes", type=int, default=300, help="(d) invocations per side")
    parser.add_argument("--quick", action="store_true", help="small sizes: under a minute")
    args = parser.parse_args()
    if args.quick:
        args.latency_runs, args.chunks, args.throughput_runs = 5, 20_000, 2
        args.streams, args.hold, args.invokes = 1000, 3.0, 100
    return args


def run_all(bench: Bench, args: argparse.Namespace) -> dict[str, Any]:
    steps: dict[str, Any] = {
        "first_event": lambda: first_event(bench, args.invokes),
        "latency": lambda: latency(bench, args.latency_runs, args.latency_chunks, args.gap_ms),
        "throughput": lambda: throughput(bench, args.chunks, args.throughput_runs),
    }
    if args.streams:
        steps["many_streams"] = lambda: asyncio.run(many_streams(bench, args.streams, args.hold))
    results: dict[str, Any] = {}
    for name, step in steps.items():
        print(f"bench_functions: {name}...", file=sys.stderr, flush=True)
        results[name] = step()
    return results


def main() -> None:
    args = parse_args()
    # A tenth more than the held streams need: routing (least in flight) may put a few more
    # than PER_WORKER on one worker, which queues them behind held ones that never end.
    workers = max(1, math.ceil(args.streams * 1.1 / PER_WORKER))
    results: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "load_average": os.getloadavg(),
        "open_files_limit": raise_file_limit(),
        "workers": workers,
    }
    with tempfile.TemporaryDirectory(prefix="hpcgate-bench-functions-") as name:
        directory = Path(name)
        directory.chmod(0o755)
        with running(directory, workers) as bench:
            results |= run_all(bench, args)
    results["load_average_after"] = os.getloadavg()
    results["targets_met"] = targets(results)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
