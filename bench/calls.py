"""Python function calls per request, route by route: a cost measure without timing noise.

Wall-clock and CPU figures on a shared two-core VM move by 10-30% between runs of the same
code; the number of Python calls the gateway makes to answer one request does not. This
runs the app in process (one event loop, ``httpx.ASGITransport``: no sockets, no uvicorn),
answers each route a few times to warm caches, then counts the calls of 200 more under
``cProfile`` and prints them per request. The proxied GET goes to a replica of
``bench.clock_backend`` (a real job on the embedded scheduler): its calls are the gateway's,
the replica runs in a process of its own. Compare two checkouts by running this in each::

    .venv/bin/python -m bench.calls [--requests 200] [--rate-limits]

``--rate-limits`` adds a ``[rate_limits]`` table that sets every per-user limit (none
reached): what the limits cost each route.

Only the event loop's thread is counted: file operations that run in worker threads add to
the file routes what this does not show (``bench.bench_files`` measures those).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import os
import pstats
import tempfile
from pathlib import Path

import httpx

from bench.bench_services import clock_script
from tests.support.accounts import unix_account
from tests.support.gateway_process import FALLBACK
from tests.support.services import toml_string

CONFIG = """
[systems.local]
scheduler = "embedded"
slots = 2
roots = ["{files}"]

[services.clock]
system = "local"
script = {clock}
min_replicas = 1
max_replicas = 1
users = ["alice"]
run_as = "services"  # as root (multi-user): the fallback account
"""
SCRIPT = "#!/bin/bash\ntrue\n"
SERVICE = "/api/v1/services/clock"
PROXIED = f"{SERVICE}/proxy"  # to bench_services' fixed-clock backend, as a replica
WARM = 50
HEALTH = "/api/v1/health"  # asked without a token, as a liveness probe asks
ANONYMOUS: dict[str, str] = {}


#: Every per-user limit, none of which the run reaches (``--rate-limits``).
RATE_LIMITS = """
[rate_limits]
requests_per_minute = 1000000
concurrent_streams = 1000
llm_tokens_per_day = 1000000000
"""


def make_home(rate_limits: bool = False) -> tuple[Path, Path]:
    """A new home with its configuration, and the directory of files the routes read."""
    home = Path(tempfile.mkdtemp(prefix="hpcgate-calls-"))
    files = home / "files"
    files.mkdir()
    for n in range(20):
        (files / f"f{n}").write_text(f"{n}\n")
    home.chmod(0o755)  # the replica's account reaches its working directory
    config = CONFIG.format(files=files, clock=toml_string(clock_script()))
    config += RATE_LIMITS if rate_limits else ""
    if os.geteuid() == 0:
        unix_account(FALLBACK)
        config += f'\n[users]\nfallback = "{FALLBACK}"\n'
    (home / "config.toml").write_text(config)
    return home, files


async def measure(requests: int, rate_limits: bool = False) -> dict[str, int]:
    home, files = make_home(rate_limits)
    os.environ["HPCGATE_HOME"] = str(home)
    from hpcgate.api.app import create_app
    from hpcgate.config import load_settings
    from hpcgate.model.principal import DEFAULT_SCOPES

    app = create_app(load_settings(home / "config.toml"))
    async with app.router.lifespan_context(app):
        issued = await app.state.gateway.tokens.create("alice", frozenset(DEFAULT_SCOPES))
        headers = {"Authorization": f"Bearer {issued.secret}"}
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
            try:
                return await _count_routes(client, headers, files, requests)
            finally:
                await _stop_clock(client, home)


async def _count_routes(
    client: httpx.AsyncClient, headers: dict[str, str], files: Path, requests: int
) -> dict[str, int]:
    jobs = "/api/v1/systems/local/jobs"
    submitted = await client.post(jobs, json={"script": SCRIPT}, headers=headers)
    submitted.raise_for_status()
    routes = {
        "GET job": f"{jobs}/{submitted.json()['id']}",
        "GET jobs (5)": f"{jobs}?limit=5",
        "GET systems": "/api/v1/systems",
        "GET files/stat": f"/api/v1/systems/local/files/stat?path={files}/f1",
        "GET files/ls (20)": f"/api/v1/systems/local/files/ls?path={files}",
        "GET health": HEALTH,
        "GET service proxy": f"{PROXIED}/small",
    }
    await _clock_ready(client, headers)
    counted = {}
    for name, url in routes.items():
        sent = ANONYMOUS if url == HEALTH else headers  # a probe's: a token would add its check
        counted[name] = await _calls_per_request(client, url, sent, requests)
    return counted


async def _clock_ready(client: httpx.AsyncClient, headers: dict[str, str]) -> None:
    for _ in range(600):
        if (await client.get(f"{PROXIED}/small", headers=headers)).status_code == 200:
            return
        await asyncio.sleep(0.1)
    raise TimeoutError("the clock service never answered")


async def _stop_clock(client: httpx.AsyncClient, home: Path) -> None:
    """Scale the service to 0 and wait until its replica is gone (its job would outlive
    the gateway)."""
    admin = {"Authorization": f"Bearer {(home / 'admin-token').read_text().strip()}"}
    await client.patch(SERVICE, json={"min_replicas": 0, "max_replicas": 0}, headers=admin)
    for _ in range(600):
        replicas = (await client.get(SERVICE, headers=admin)).json()["replicas"]
        if all(r["state"] in ("stopped", "failed") for r in replicas):
            return
        await asyncio.sleep(0.1)


async def _calls_per_request(
    client: httpx.AsyncClient, url: str, headers: dict[str, str], requests: int
) -> int:
    for _ in range(WARM):
        (await client.get(url, headers=headers)).raise_for_status()
    profile = cProfile.Profile()
    profile.enable()
    for _ in range(requests):
        await client.get(url, headers=headers)
    profile.disable()
    return int(pstats.Stats(profile).total_calls) // requests  # type: ignore[attr-defined]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--rate-limits", action="store_true", help="with every user limit set")
    args = parser.parse_args()
    print(json.dumps(asyncio.run(measure(args.requests, args.rate_limits)), indent=2))


if __name__ == "__main__":
    main()
