"""The cost of ``[rate_limits]`` on the hot path: job-status GET throughput (wrk) of two
gateways started side by side, one without the table and one with every per-user limit set
(high enough never to refuse), measured in turns (A B, B A, ...) in one run, so both see the
same machine. Prints JSON; bench/RESULTS.md has the results.

    .venv/bin/python -m bench.bench_limits [--rounds 3] [--seconds 8] [--clients 50]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from bench.bench import CONFIGS, TRUE_SCRIPT, cpu_seconds, long_jobs, run_wrk
from bench.host import machine
from hpcgate.model.jobs import JobSpec
from tests.support.gateway_process import GatewayProcess, new_gateway

#: Every per-user limit, none of which the run reaches.
LIMITED = """
[rate_limits]
requests_per_minute = 1000000
concurrent_streams = 1000
llm_tokens_per_day = 1000000000
"""
SYSTEM = "local"


def started(home: Path, config: str) -> tuple[GatewayProcess, str, list[str]]:
    """A gateway, a token of its bench user, and live jobs whose status is read."""
    server = new_gateway(home, config)
    server.start()
    token = server.token("bench")
    spec = JobSpec(script=TRUE_SCRIPT, working_directory=str(home))
    with server.client(token) as client:
        ids = long_jobs(client, SYSTEM, spec, 20)
    return server, token, ids


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_limits")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--clients", type=int, default=50)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="hpcgate-bench-limits-") as tmp:
        print(json.dumps(measure(Path(tmp), args), indent=2))


def measure(tmp: Path, args: argparse.Namespace) -> dict[str, object]:
    result: dict[str, object] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "load_average_at_start": os.getloadavg(),
    }
    plain = started(tmp / "plain", CONFIGS["embedded"])
    limited = started(tmp / "limited", CONFIGS["embedded"] + LIMITED)
    runs: dict[str, list[dict[str, float]]] = {"without": [], "with": []}
    try:
        time.sleep(2)  # a watcher poll or two: the jobs are known to be live
        for round_ in range(args.rounds):
            order = [("without", plain), ("with", limited)]
            for label, (server, token, ids) in order if round_ % 2 == 0 else order[::-1]:
                runs[label].append(one_run(server, token, ids, args, tmp))
    finally:
        for server, _, _ in (plain, limited):
            server.stop()
    medians = {
        label: statistics.median(run["requests_per_s"] for run in found)
        for label, found in runs.items()
    }
    cpu = {
        label: statistics.median(run["cpu_ms_per_request"] for run in found)
        for label, found in runs.items()
    }
    result |= {
        "runs": runs,
        "median_requests_per_s": medians,
        "with_over_without": round(medians["with"] / medians["without"], 3),
        "median_cpu_ms_per_request": cpu,
        "cpu_with_over_without": round(cpu["with"] / cpu["without"], 3),
        "load_average_at_end": os.getloadavg(),
    }
    return result


def one_run(
    server: GatewayProcess, token: str, ids: list[str], args: argparse.Namespace, tmp: Path
) -> dict[str, float]:
    """One wrk run, with the gateway's CPU time per request (steadier than throughput on a
    machine that is not quiet: what the gateway spends, not what it was given)."""
    assert server.process is not None
    before = cpu_seconds(server.process.pid)
    load = run_wrk(server.url, token, ids, args.clients, args.seconds, tmp, SYSTEM)
    spent = cpu_seconds(server.process.pid) - before
    return {**load, "cpu_ms_per_request": round(1000 * spent / max(load["requests"], 1), 4)}


if __name__ == "__main__":
    main()
