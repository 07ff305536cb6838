"""Two checkouts' gateways side by side: what each one's proxy adds, in the same run.

On a shared machine, latencies move by 2x between runs, so a before/after comparison made
one run after the other says little. This starts two gateways (as ``bench_services`` does,
each with its own clock replica): one from this checkout and one from another checkout's
``src`` (put first on ``PYTHONPATH``; the same ``.venv``). Then, with one client:

* small GETs, one at a time, the URLs taking turns request by request: the replica
  directly, each gateway's proxy, each gateway's ``/api/v1/health``; p50 and p99 minus the
  direct call's;
* each gateway's CPU time per proxied GET and per health GET (rounds taking turns);
* streamed answers (``/stream``) taking turns: first chunk, gap and delivery, p50 minus
  the direct read's;
* with ``--llama N`` (each gateway then has a llama.cpp replica too), N streamed chat
  completions per route taking turns: direct, and each gateway's service proxy and
  ``/v1`` (routed by ``model``, usage metered): first token and gap between tokens, p50
  minus the direct read's (a read that fails, a 502 say, is counted and read again);
  and each gateway's CPU time per streamed completion by route.

Usage, from the repository root (export the other checkout first, e.g. main)::

    git archive main src | tar -x -C /tmp/main-copy
    .venv/bin/python -m bench.side_by_side --other /tmp/main-copy/src [--requests 400] \
        [--streamed 15] [--llama 40]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from bench import bench_services as bs
from tests.support.backends import write_llama
from tests.support.gateway_process import new_gateway
from tests.support.services import admin_token, stop_services

Side = tuple[str, dict[str, str]]  # a URL and the headers it takes


@contextlib.contextmanager
def gateway(directory: Path, source: Path | None, llama: bool) -> Iterator[bs.Bench]:
    """A gateway with the clock service (and llama.cpp's), from ``source`` (None: this
    checkout)."""
    script = write_llama(directory / "llama").script if llama else None
    process = new_gateway(directory / "home", bs.gateway_config(script))
    if source is not None:
        process.wrapper = ("env", f"PYTHONPATH={source}")
    process.start_seconds = 300  # the shared VM's load can take minutes
    try:
        process.start()
        token = process.token("alice")
    except BaseException:  # not left running (with its replicas) when the start fails
        process.stop()
        raise
    try:
        yield bs.Bench(process, token, process.home)
    finally:
        try:
            stop_services(process.url, admin_token(process.home), [token], timeout=120)
        finally:
            process.stop()


def timed(client: httpx.Client, side: Side) -> float:
    url, headers = side
    started = time.perf_counter()
    answer = client.get(url, headers=headers)
    elapsed = time.perf_counter() - started
    if answer.status_code != 200:
        raise AssertionError(f"GET {url}: {answer.status_code} {answer.text[:300]}")
    return elapsed


def small_sides(benches: dict[str, bs.Bench], direct: str) -> dict[str, Side]:
    sides: dict[str, Side] = {"direct": (f"{direct}/small", {})}
    for name, bench in benches.items():
        auth = {"Authorization": f"Bearer {bench.token}"}
        sides[name] = (f"{bench.proxied('clock')}/small", auth)
        sides[f"{name} health"] = (f"{bench.gateway.url}/api/v1/health", {})
    return sides


def small_gets(sides: dict[str, Side], count: int) -> dict[str, Any]:
    times: dict[str, list[float]] = {name: [] for name in sides}
    with httpx.Client(timeout=60) as client:
        for round_ in range(20 + count):  # 20 to warm the connections
            for name, side in sides.items():
                elapsed = timed(client, side)
                if round_ >= 20:
                    times[name].append(elapsed)
    figures: dict[str, Any] = {}
    for q in (50, 99):
        direct = bs.percentile(times["direct"], q)
        figures[f"added_p{q}_ms"] = {
            name: bs.ms(bs.percentile(values, q) - direct)
            for name, values in times.items()
            if name != "direct"
        }
    return figures


def cpu_per_get(benches: dict[str, bs.Bench], sides: dict[str, Side], count: int) -> dict[str, int]:
    """Microseconds of each gateway's CPU per request, medians of 3 rounds taking turns."""
    per: dict[str, list[float]] = {}
    with httpx.Client(timeout=60) as client:
        for _ in range(3):
            for name, bench in benches.items():
                assert bench.gateway.process is not None
                pid = bench.gateway.process.pid
                for key in (name, f"{name} health"):
                    before = bs.cpu_seconds(pid)
                    for _ in range(count):
                        timed(client, sides[key])
                    per.setdefault(key, []).append((bs.cpu_seconds(pid) - before) / count)
    return {key: round(statistics.median(values) * 1e6) for key, values in per.items()}


def streams(benches: dict[str, bs.Bench], direct: str, runs: int) -> dict[str, Any]:
    query = f"/stream?n={bs.CHUNKS}&interval={bs.CHUNK_INTERVAL}"
    sides: dict[str, Side] = {"direct": (direct + query, {})}
    for name, bench in benches.items():
        sides[name] = (bench.proxied("clock") + query, {"Authorization": f"Bearer {bench.token}"})
    times: dict[str, list[bs.StreamTimes]] = {name: [] for name in sides}
    with contextlib.ExitStack() as stack:
        clients = {
            n: stack.enter_context(httpx.Client(timeout=60, headers=h))
            for n, (_, h) in sides.items()
        }
        for round_ in range(1 + runs):  # the first round warms up
            for name, (url, _) in sides.items():
                read = bs.read_clock_stream(clients[name], url)
                if round_:
                    times[name].append(read)
    direct_times = times.pop("direct")
    return {name: bs.stream_figures(direct_times, got) for name, got in times.items()}


def llama_sides(benches: dict[str, bs.Bench]) -> dict[str, Side]:
    """Each side's base URL (``/v1/chat/completions`` follows) and its headers."""
    sides: dict[str, Side] = {"direct": (bs.direct_url(benches["this"], "llama"), {})}
    for name, bench in benches.items():
        auth = {"Authorization": f"Bearer {bench.token}"}
        sides[f"{name} proxy"] = (bench.proxied("llama"), auth)
        sides[f"{name} /v1"] = (bench.gateway.url, auth)
    return sides


def llama(benches: dict[str, bs.Bench], runs: int) -> dict[str, Any]:
    """First token and gap between tokens, the sides taking turns (after one unmeasured
    read each); then each gateway's CPU per streamed completion, route by route."""
    sides = llama_sides(benches)
    times: dict[str, list[bs.StreamTimes]] = {name: [] for name in sides}
    with contextlib.ExitStack() as stack:
        clients = {
            n: stack.enter_context(httpx.Client(timeout=120, headers=h))
            for n, (_, h) in sides.items()
        }
        failed = dict.fromkeys(sides, 0)
        for round_ in range(1 + runs):
            for name, (url, _) in sides.items():
                read = read_llama(clients[name], url, failed, name)
                if round_:
                    times[name].append(read)
        cpu = llama_cpu(benches, sides, clients, max(10, runs // 2))
    direct_times = times.pop("direct")
    figures: dict[str, Any] = {"runs": runs, "failed_reads": failed}
    for name, got in times.items():
        figures[name] = bs.stream_figures(direct_times, got)
        figures[name].pop("chunk_delivery")
    return figures | {"cpu_us_per_completion": cpu}


def read_llama(client: httpx.Client, url: str, failed: dict[str, int], side: str) -> bs.StreamTimes:
    """One stream read, read again (up to 5 times) if it fails; the failures counted."""
    for _ in range(5):
        try:
            return bs.read_llama_stream(client, url)
        except (AssertionError, httpx.HTTPError):
            failed[side] += 1
    raise AssertionError(f"{side}: five reads in a row failed")


def llama_cpu(
    benches: dict[str, bs.Bench],
    sides: dict[str, Side],
    clients: dict[str, httpx.Client],
    count: int,
) -> dict[str, int]:
    """Microseconds of each gateway's CPU per streamed completion by route, medians of
    3 rounds taking turns."""
    per: dict[str, list[float]] = {}
    for _ in range(3):
        for name, bench in benches.items():
            assert bench.gateway.process is not None
            pid = bench.gateway.process.pid
            for key in (f"{name} proxy", f"{name} /v1"):
                before = bs.cpu_seconds(pid)
                for _ in range(count):
                    read_llama(clients[key], sides[key][0], {key: 0}, key)
                per.setdefault(key, []).append((bs.cpu_seconds(pid) - before) / count)
    return {key: round(statistics.median(values) * 1e6) for key, values in per.items()}


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.side_by_side", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--other", type=Path, required=True, help="the other checkout's src")
    parser.add_argument("--requests", type=int, default=400, help="small GETs per URL")
    parser.add_argument("--streamed", type=int, default=15, help="streamed answers per side")
    parser.add_argument(
        "--llama", type=int, default=0, help="llama.cpp streamed completions per route (0: none)"
    )
    args = parser.parse_args()
    results: dict[str, Any] = {"load_before": os.getloadavg()}
    with (
        tempfile.TemporaryDirectory(prefix="hpcgate-side-by-side-") as name,
        contextlib.ExitStack() as stack,
    ):
        directory = Path(name)
        directory.chmod(0o755)
        (directory / "this").mkdir()
        (directory / "other").mkdir()
        benches = {
            "this": stack.enter_context(gateway(directory / "this", None, args.llama > 0)),
            "other": stack.enter_context(
                gateway(directory / "other", args.other.resolve(), args.llama > 0)
            ),
        }
        direct = bs.direct_url(benches["this"], "clock")
        sides = small_sides(benches, direct)
        results["small_get"] = small_gets(sides, args.requests)
        results["cpu_us_per_get"] = cpu_per_get(benches, sides, args.requests)
        results["streamed"] = streams(benches, direct, args.streamed)
        if args.llama:
            results["llama"] = llama(benches, args.llama)
    results["load_after"] = os.getloadavg()
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
