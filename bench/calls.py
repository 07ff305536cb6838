"""Python function calls per request, route by route: a cost measure without timing noise.

Wall-clock and CPU figures on a shared two-core VM move by 10-30% between runs of the same
code; the number of Python calls the gateway makes to answer one request does not. This
runs the app in process (one event loop, ``httpx.ASGITransport``: no sockets, no uvicorn),
answers each route a few times to warm caches, then counts the calls of 200 more under
``cProfile`` and prints them per request. Compare two checkouts by running this in each::

    .venv/bin/python -m bench.calls [--requests 200]

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

CONFIG = """
[systems.local]
scheduler = "embedded"
slots = 2
roots = ["{files}"]
"""
SCRIPT = "#!/bin/bash\ntrue\n"
WARM = 50


async def measure(requests: int) -> dict[str, int]:
    home = Path(tempfile.mkdtemp(prefix="hpcgate-calls-"))
    files = home / "files"
    files.mkdir()
    for n in range(20):
        (files / f"f{n}").write_text(f"{n}\n")
    (home / "config.toml").write_text(CONFIG.format(files=files))
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
            return await _count_routes(client, headers, files, requests)


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
        "GET health": "/api/v1/health",
    }
    counted = {}
    for name, url in routes.items():
        counted[name] = await _calls_per_request(client, url, headers, requests)
    return counted


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
    args = parser.parse_args()
    print(json.dumps(asyncio.run(measure(args.requests)), indent=2))


if __name__ == "__main__":
    main()
