"""An open-loop HTTP load: ``clients`` keep-alive connections that together send ``rate``
GET requests per second for ``seconds``, each on its own schedule, whatever the server's
speed. Latency is counted from when a request was due, not from when it went out, so a
server that falls behind is charged for the wait (no coordinated omission, as wrk2 does).

wrk is closed-loop: each connection sends its next request the moment the previous answer
arrives, so with N connections the mean latency is N / throughput by construction (500
connections at 2000 requests/s: 250 ms). This measures the other question: how fast are
answers when 500 clients together ask 1000 times a second?

Standard library only, one process, asyncio streams.

Usage, from the repository root (or ``python bench/openloop.py``: it needs nothing else):
    python -m bench.openloop URL TOKEN PATH [PATH...] [--rate 1000] [--clients 500]
        [--seconds 20]; prints one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import time
from urllib.parse import urlsplit


async def client(
    host: str, port: int, requests: list[bytes], start: float, period: float, end: float
) -> tuple[list[float], int]:
    """One connection: a request every ``period`` from a random phase; the latencies (from
    each request's due time) and the count of failed requests."""
    latencies: list[float] = []
    failed = 0
    reader, writer = await asyncio.open_connection(host, port)
    due = start + random.uniform(0, period)
    loop = asyncio.get_running_loop()
    try:
        while due < end:
            await asyncio.sleep(max(0.0, due - loop.time()))
            writer.write(random.choice(requests))
            ok = await answer(reader)
            latencies.append(loop.time() - due)
            failed += not ok
            due += period
    finally:
        writer.close()
    return latencies, failed


async def answer(reader: asyncio.StreamReader) -> bool:
    """Read one response (Content-Length bodies only); whether its status was 200."""
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = 0
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.lower() == b"content-length":
            length = int(value)
    await reader.readexactly(length)
    return status == 200


def request(host: str, path: str, token: str) -> bytes:
    return (
        f"GET {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\n\r\n"
    ).encode()


def percentile(ordered: list[float], pct: float) -> float:
    return ordered[min(len(ordered) - 1, int(len(ordered) * pct / 100))] if ordered else 0.0


async def run(
    url: str, token: str, paths: list[str], rate: float, clients: int, seconds: float
) -> dict[str, float]:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    requests = [request(host, path, token) for path in paths]
    loop = asyncio.get_running_loop()
    start = loop.time() + 1.0  # time to open every connection first
    end = start + seconds
    period = clients / rate
    began = time.monotonic()
    done = await asyncio.gather(
        *(client(host, port, requests, start, period, end) for _ in range(clients)),
        return_exceptions=True,
    )
    latencies = sorted(x for d in done if isinstance(d, tuple) for x in d[0])
    failed = sum(d[1] for d in done if isinstance(d, tuple))
    broken = sum(1 for d in done if isinstance(d, BaseException))
    took = time.monotonic() - began - 1.0
    return {
        "rate_asked": rate,
        "clients": clients,
        "requests": len(latencies),
        "requests_per_s": round(len(latencies) / took, 1),
        "non_200": failed,
        "connections_failed": broken,
        "latency_p50_ms": round(percentile(latencies, 50) * 1000, 2),
        "latency_p90_ms": round(percentile(latencies, 90) * 1000, 2),
        "latency_p99_ms": round(percentile(latencies, 99) * 1000, 2),
        "latency_max_ms": round((latencies[-1] if latencies else 0.0) * 1000, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("url")
    parser.add_argument("token")
    parser.add_argument("paths", nargs="+")
    parser.add_argument("--rate", type=float, default=1000.0)
    parser.add_argument("--clients", type=int, default=500)
    parser.add_argument("--seconds", type=float, default=20.0)
    args = parser.parse_args()
    found = asyncio.run(
        run(args.url, args.token, args.paths, args.rate, args.clients, args.seconds)
    )
    print(json.dumps(found))


if __name__ == "__main__":
    main()
