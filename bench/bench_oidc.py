"""OpenID provider tokens on the hot path (issue 18), against the real provider of the tests
(``scripts/idp``, node-oidc-provider):

1. job-status GET throughput (wrk) of one gateway with hpcgate's own token and with an
   access token of the provider for the same user, in turns (A B, B A, ...) in one run, so
   both see the same machine; target: OIDC at least 90% of hpcgate's;
2. the validator in this process: a cached token's check (target: p50 at most 0.2 ms), and
   for comparison a full verification (signature and claims) of the same token;
3. the provider stopped (discovery and JWKS unreachable): the token already seen, and one
   never seen but signed with a known key, still answer 200, under wrk too.

Prints JSON; bench/RESULTS.md has the results.

    .venv/bin/python -m bench.bench_oidc [--rounds 8] [--seconds 4] [--clients 50]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import tempfile
import time
from collections.abc import Awaitable
from datetime import UTC, datetime
from pathlib import Path

from bench.bench import CONFIGS, TRUE_SCRIPT, cpu_seconds, long_jobs, run_wrk
from bench.host import machine
from hpcgate.config import OidcIssuer
from hpcgate.identity.service import Identity, unverified
from hpcgate.model.jobs import JobSpec
from tests.support.gateway_process import GatewayProcess, new_gateway
from tests.support.idp import IdP, install

SYSTEM, USER, AUDIENCE = "local", "bench", "hpcgate"
SCOPE = "openid jobs:read jobs:write"


def oidc(issuer: str) -> str:
    return f"""
[auth.oidc.bench]
issuer = "{issuer}"
audience = "{AUDIENCE}"
allow_insecure_issuer = true
"""


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_oidc")
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--seconds", type=int, default=4)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--checks", type=int, default=20_000, help="in-process cached checks")
    args = parser.parse_args()
    install()
    with tempfile.TemporaryDirectory(prefix="hpcgate-bench-oidc-") as tmp:
        print(json.dumps(measure(Path(tmp), args), indent=2))


def measure(tmp: Path, args: argparse.Namespace) -> dict[str, object]:
    result: dict[str, object] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "load_average_at_start": os.getloadavg(),
    }
    (tmp / "idp").mkdir()
    idp = IdP(tmp / "idp")
    idp.start()
    server = new_gateway(tmp / "gateway", CONFIGS["embedded"] + oidc(idp.issuer))
    server.start_seconds = 120
    try:
        server.start()
        ids = _jobs(server, tmp)
        result |= _throughput(server, idp, ids, tmp, args)
        result["validator"] = asyncio.run(_validator(idp, args.checks))
        result["provider_stopped"] = _outage(server, idp, ids, tmp, args)
    finally:
        server.stop()
        idp.stop()
    result["load_average_at_end"] = os.getloadavg()
    return result


def _jobs(server: GatewayProcess, tmp: Path) -> list[str]:
    """Live jobs of the bench user, whose status is read."""
    spec = JobSpec(script=TRUE_SCRIPT, working_directory=str(tmp))
    with server.client(server.token(USER)) as client:
        return long_jobs(client, SYSTEM, spec, 20)


def _throughput(
    server: GatewayProcess, idp: IdP, ids: list[str], tmp: Path, args: argparse.Namespace
) -> dict[str, object]:
    own = server.token(USER)
    provider = idp.device_flow(USER, SCOPE)  # the same user, through the provider's flow
    time.sleep(2)  # a watcher poll or two: the jobs are known to be live
    tokens = {"hpcgate": own, "oidc": provider}
    runs: dict[str, list[dict[str, float]]] = {"hpcgate": [], "oidc": []}
    for round_ in range(args.rounds):
        order = list(tokens.items())
        for label, token in order if round_ % 2 == 0 else order[::-1]:
            runs[label].append(_one_run(server, token, ids, args, tmp))
    medians = {k: statistics.median(r["requests_per_s"] for r in v) for k, v in runs.items()}
    # Each round's two runs are back to back: their ratio sees one machine's load, which on
    # a shared machine moves more between rounds than within one.
    pairs = zip(runs["hpcgate"], runs["oidc"], strict=True)
    paired = [oidc["requests_per_s"] / own["requests_per_s"] for own, oidc in pairs]
    cpu = {k: statistics.median(r["cpu_ms_per_request"] for r in v) for k, v in runs.items()}
    return {
        "runs": runs,
        "median_requests_per_s": medians,
        "oidc_over_hpcgate": round(medians["oidc"] / medians["hpcgate"], 3),
        "per_round_oidc_over_hpcgate": [round(r, 3) for r in paired],
        "median_per_round_ratio": round(statistics.median(paired), 3),
        "median_cpu_ms_per_request": cpu,
        "cpu_oidc_over_hpcgate": round(cpu["oidc"] / cpu["hpcgate"], 3),
    }


def _one_run(
    server: GatewayProcess, token: str, ids: list[str], args: argparse.Namespace, tmp: Path
) -> dict[str, float]:
    assert server.process is not None
    before = cpu_seconds(server.process.pid)
    load = run_wrk(server.url, token, ids, args.clients, args.seconds, tmp, SYSTEM)
    spent = cpu_seconds(server.process.pid) - before
    return {**load, "cpu_ms_per_request": round(1000 * spent / max(load["requests"], 1), 4)}


async def _validator(idp: IdP, checks: int) -> dict[str, object]:
    """The gateway's validator in this process, on a real token of the provider."""
    token = idp.device_flow(USER, SCOPE)
    config = OidcIssuer(issuer=idp.issuer, audience=AUDIENCE, allow_insecure_issuer=True)
    identity = Identity({"bench": config})
    try:
        await identity.authenticate(token)  # discovery, keys, the first verification
        cached = [await _timed(identity.authenticate(token)) for _ in range(checks)]
        provider, (header, _) = identity.providers[0], unverified(token)
        full = [await _timed(provider.verify(token, header)) for _ in range(checks // 10)]
    finally:
        await identity.close()
    return {
        "token_chars": len(token),
        "cached_check_ms": _summary(cached),
        "full_verification_ms": _summary(full),
    }


async def _timed(call: Awaitable[object]) -> float:
    start = time.perf_counter_ns()
    await call
    return (time.perf_counter_ns() - start) / 1e6


def _summary(times: list[float]) -> dict[str, float]:
    ordered = sorted(times)

    def pick(pct: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(len(ordered) * pct))], 4)

    return {"n": len(ordered), "p50": pick(0.5), "p90": pick(0.9), "p99": pick(0.99)}


def _outage(
    server: GatewayProcess, idp: IdP, ids: list[str], tmp: Path, args: argparse.Namespace
) -> dict[str, object]:
    """Stop the provider: what was seen and what is signed with a known key still pass."""
    seen, unseen = idp.device_flow(USER, SCOPE), idp.device_flow(USER, SCOPE)
    with server.client(seen) as client:
        assert client.get(f"/api/v1/systems/{SYSTEM}/jobs").status_code == 200
    idp.stop()
    statuses = {}
    for label, token in (("seen", seen), ("never_seen_known_key", unseen)):
        with server.client(token) as client:
            statuses[label] = client.get(f"/api/v1/systems/{SYSTEM}/jobs").status_code
    load = run_wrk(server.url, seen, ids, args.clients, args.seconds, tmp, SYSTEM)
    return {"statuses": statuses, "wrk_while_stopped": load}


if __name__ == "__main__":
    main()
