"""Every page scanned by axe-core: no serious or critical violation; and what each page
loads stays small (the gateway serves every asset; no page pulls more than ~300 KB).

With HPCGATE_UI_SCREENSHOTS=DIR set, each page is also saved there as a PNG (the README's
pictures: ``HPCGATE_UI_SCREENSHOTS=docs/ui pytest tests/webui/test_accessibility.py``)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from playwright.sync_api import Page, ViewportSize

from tests.support.browser import grave_violations
from tests.support.jobs import wait_for_job
from tests.support.services import create_service
from tests.webui.conftest import UiUser, with_axe

WEIGHT_MAX = 300_000
#: What the page and everything it loaded weigh, as the browser counted them (uncompressed).
WEIGHT = (
    "performance.getEntries().filter((e) => 'decodedBodySize' in e)"
    ".reduce((n, e) => n + Math.max(e.transferSize, e.decodedBodySize), 0)"
)
PHONE = ViewportSize(width=390, height=844)
LAPTOP = ViewportSize(width=1280, height=800)


def _pages(ui: UiUser) -> dict[str, str]:
    """One of each page, with something on it: a running job, a finished one, a file."""
    running = {"name": "simulate", "script": "#!/bin/bash\nsleep 120\n"}
    busy = ui.api.post("/api/v1/systems/local/jobs", json=running).json()
    wait_for_job(ui.api, busy["id"], lambda j: j["state"] == "RUNNING")
    spec = {"name": "hello", "script": "#!/bin/bash\nfor i in 1 2 3; do echo step $i; done\n"}
    job = ui.api.post("/api/v1/systems/local/jobs", json=spec).json()
    wait_for_job(ui.api, job["id"], lambda j: j["state"] == "COMPLETED")
    home = ui.api.get("/api/v1/systems/local").json()["home"]
    ui.api.post("/api/v1/systems/local/files/mkdir", json={"path": f"{home}/runs", "parents": True})
    text = f"{home}/input.txt"
    ui.api.put("/api/v1/systems/local/files/upload", params={"path": text}, content=b"n = 64\n")
    service = _service(ui)  # no replica: its pages, not its server, are scanned
    create_service(ui.api, name=service, min_replicas=0, models=[f"model-{ui.name}"])
    return {
        "dashboard": "/ui/dashboard",
        "jobs": "/ui/jobs",
        "job-new": "/ui/jobs/new",
        "job": f"/ui/jobs/local/{job['id']}",
        "files": "/ui/files/local",
        "file-edit": f"/ui/files/local/edit?path={text}",
        "file-delete": f"/ui/files/local/delete?path={text}",
        "tokens": "/ui/tokens",
        "services": "/ui/services",
        "service": f"/ui/services/{service}",
        "chat": f"/ui/services/{service}/chat",
        "functions": "/ui/functions",
        "error": "/ui/jobs/local/99999999",
    }


def _service(ui: UiUser) -> str:
    return f"a-{ui.name}"


def _scan(page: Page) -> list[str]:
    results: dict[str, Any] = page.evaluate("axe.run(document, {resultTypes: ['violations']})")
    return grave_violations(results)


def scanned(page: Page, base: str, pages: dict[str, str]) -> dict[str, list[str]]:
    """Each page at laptop and phone widths (its context given axe first: :func:`with_axe`):
    the serious or critical violations found, by page and width; and none loads more than
    :data:`WEIGHT_MAX` (saved as PNGs if HPCGATE_UI_SCREENSHOTS is set)."""
    shots = os.environ.get("HPCGATE_UI_SCREENSHOTS")
    found: dict[str, list[str]] = {}
    for name, path in pages.items():
        for size in (LAPTOP, PHONE):
            page.set_viewport_size(size)
            page.goto(base + path)
            page.wait_for_load_state("load")
            if grave := _scan(page):
                found[f"{name} at {size['width']} px"] = grave
            loaded = page.evaluate(WEIGHT)
            assert 0 < loaded <= WEIGHT_MAX, f"{name} loaded {loaded} bytes"
            if shots and size is LAPTOP:
                Path(shots).mkdir(parents=True, exist_ok=True)
                page.screenshot(path=f"{shots}/{name}.png", full_page=False)
    return found


def test_every_page_passes_axe_and_stays_light(ui: UiUser) -> None:
    with_axe(ui.context)
    assert scanned(ui.page, ui.base, _pages(ui)) == {}
    assert ui.dialogs == []
    assert ui.refused == []  # htmx and app.js need nothing inline
    for job in ui.api.get("/api/v1/systems/local/jobs", params={"state": "RUNNING"}).json()[
        "items"
    ]:
        ui.api.delete(f"/api/v1/systems/local/jobs/{job['id']}")
    assert ui.api.delete(f"/api/v1/services/{_service(ui)}").status_code == 202


def test_the_sign_in_page_passes_axe(ui: UiUser) -> None:
    ui.context.clear_cookies()
    with_axe(ui.context)
    ui.goto("/ui/signin")
    assert _scan(ui.page) == []
