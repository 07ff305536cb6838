"""How fast the web interface's pages load in a real headless Chromium (issue 19: "first page
load under 1 s here; no page pulls more than ~300 KB"), against a real gateway on the
embedded default. Each page is loaded cold (a new browser context: empty cache, the session
cookie only) and then warm (the same context again), ``--rounds`` times; the figures are the
browser's own Navigation Timing (request start to the load event) and what the page and its
assets weighed. Prints JSON; bench/RESULTS.md has the results.

    .venv/bin/python -m bench.bench_ui [--rounds 10]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from playwright.sync_api import Browser, sync_playwright

from bench.host import machine
from tests.support.browser import ARGS, CHROMIUM, check_installed
from tests.support.gateway_process import GatewayProcess, new_gateway

PAGES = {
    "sign-in": "/ui/signin",
    "dashboard": "/ui/dashboard",
    "jobs": "/ui/jobs",
    "job-new": "/ui/jobs/new",
    "files": "/ui/files/local",
    "tokens": "/ui/tokens",
    "services": "/ui/services",
    "functions": "/ui/functions",
    "admin": "/ui/admin",
}
#: The browser's view of one load: request start to load event, and the bytes it pulled.
TIMING = """() => {
  const nav = performance.getEntriesByType('navigation')[0];
  const entries = performance.getEntries().filter((e) => 'decodedBodySize' in e);
  return {
    ms: nav.loadEventEnd - nav.startTime,
    bytes: entries.reduce((n, e) => n + Math.max(e.transferSize, e.decodedBodySize), 0),
  };
}"""


def signed_in_state(browser: Browser, base: str, token: str, folder: Path) -> str:
    """A storage state (the session cookie) of a browser signed in with ``token``."""
    context = browser.new_context()
    page = context.new_page()
    page.goto(f"{base}/ui/signin")
    page.get_by_label("Token").fill(token)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{base}/ui/dashboard")
    state = str(folder / "state.json")
    context.storage_state(path=state)
    context.close()
    return state


def one_page(browser: Browser, base: str, path: str, state: str | None) -> dict[str, Any]:
    """The page loaded cold, then warm, in a context of its own."""
    context = browser.new_context(storage_state=state)
    page = context.new_page()
    try:
        loads = []
        for _ in ("cold", "warm"):
            answer = page.goto(base + path, wait_until="load")
            assert answer is not None and answer.status == 200, (path, answer)
            loads.append(page.evaluate(TIMING))
        return {"cold": loads[0], "warm": loads[1]}
    finally:
        context.close()


def measure(server: GatewayProcess, token: str, rounds: int, folder: Path) -> dict[str, Any]:
    with sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            state = signed_in_state(browser, server.url, token, folder)
            one_page(browser, server.url, "/ui/dashboard", state)  # the first of all: warm-up
            runs: dict[str, list[dict[str, Any]]] = {name: [] for name in PAGES}
            for _ in range(rounds):
                for name, path in PAGES.items():
                    own = None if name == "sign-in" else state
                    runs[name].append(one_page(browser, server.url, path, own))
        finally:
            browser.close()
    return {name: summary(loads) for name, loads in runs.items()}


def summary(loads: list[dict[str, Any]]) -> dict[str, float]:
    cold = [load["cold"]["ms"] for load in loads]
    warm = [load["warm"]["ms"] for load in loads]
    return {
        "cold_p50_ms": round(statistics.median(cold), 1),
        "cold_max_ms": round(max(cold), 1),
        "warm_p50_ms": round(statistics.median(warm), 1),
        "cold_kb": round(max(load["cold"]["bytes"] for load in loads) / 1000, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args()
    check_installed()
    with tempfile.TemporaryDirectory(prefix="hpcgate-bench-ui-") as tmp:
        folder = Path(tmp)
        server = new_gateway(folder / "home")
        server.start()
        try:
            token = server.token("bench", "admin")
            pages = measure(server, token, args.rounds, folder)
        finally:
            server.stop()
    print(
        json.dumps(
            {
                "when": datetime.now(UTC).isoformat(timespec="seconds"),
                "machine": machine(),
                "rounds": args.rounds,
                "pages": pages,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
