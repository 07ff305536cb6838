"""A real headless Chromium for the web interface's tier: Debian's ``chromium`` driven by
Playwright for Python (never ``playwright install``: it would download a browser build),
with axe-core (npm) for the accessibility scans; ``scripts/uitest install`` installs both.
Without them the tier is skipped here, and fails in CI."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = Path(os.environ.get("HPCGATE_UI_CHROMIUM", "/usr/bin/chromium"))
AXE = Path(
    os.environ.get("HPCGATE_UI_AXE", "/opt/hpcgate-ui-test/node_modules/axe-core/axe.min.js")
)
#: Firefox (Debian's firefox-esr), driven over WebDriver BiDi by puppeteer-core (npm), which
#: needs neither geckodriver nor a browser download (Playwright's Firefox is a patched build).
FIREFOX = Path(os.environ.get("HPCGATE_UI_FIREFOX", "/usr/bin/firefox-esr"))
NODE_MODULES = Path(os.environ.get("HPCGATE_UI_NODE_MODULES", "/opt/hpcgate-ui-test/node_modules"))
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
#: The impacts a page may not have any violation of.
GRAVE = frozenset({"serious", "critical"})


def unavailable(reason: str) -> None:
    """Skip the tier here; in CI fail it, since CI must run it."""
    if os.environ.get("CI"):
        pytest.fail(f"the web interface tier must run in CI, but {reason}")
    pytest.skip(reason)


def check_installed() -> None:
    if not CHROMIUM.exists():
        unavailable(f"{CHROMIUM} is missing (scripts/uitest install)")
    if not AXE.exists():
        unavailable(f"{AXE} is missing (scripts/uitest install)")


def check_firefox() -> None:
    if not FIREFOX.exists():
        unavailable(f"{FIREFOX} is missing (scripts/uitest install)")
    if not (NODE_MODULES / "puppeteer-core" / "package.json").exists():
        unavailable(f"puppeteer-core is missing from {NODE_MODULES} (scripts/uitest install)")


def grave_violations(results: dict[str, Any]) -> list[str]:
    """axe's serious and critical violations, each with the elements it found."""
    return [
        f"{v['id']} ({v['impact']}): {v['help']} at {[n['target'] for n in v['nodes']]}"
        for v in results["violations"]
        if v.get("impact") in GRAVE
    ]
