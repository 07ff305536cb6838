"""The web interface on a Slurm system (the shared cluster of scripts/slurm, a multi-user
gateway as root): a job submitted from the form, its output shown while it runs."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, expect

from tests.support.gateway_process import GatewayProcess, running_gateway
from tests.support.jobs import wait_for_job
from tests.support.slurm import CONFIG, SYSTEM, ensure_cluster
from tests.webui.conftest import sign_in


@pytest.fixture(scope="module")
def slurm_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    if os.geteuid() != 0:
        pytest.skip("the multi-user gateway runs as root")
    ensure_cluster()
    yield from running_gateway(tmp_path_factory.mktemp("slurm-gateway"), CONFIG)


def test_a_slurm_job_shows_its_output_live(slurm_gateway: GatewayProcess, browser: Browser) -> None:
    token = slurm_gateway.token("alice")
    gate = f"go-{uuid.uuid4().hex[:8]}"
    script = (
        f"#!/bin/bash\necho first\nfor i in $(seq 1200); do [ -e {gate} ] && break; sleep 0.1;"
        " done\necho second\n"
    )
    context = browser.new_context()
    context.set_default_timeout(90_000)  # Slurm starts a job within seconds, on a busy day more
    try:
        page = context.new_page()
        sign_in(page, slurm_gateway.url, token)
        page.goto(f"{slurm_gateway.url}/ui/jobs/new")
        page.get_by_label("System").select_option(SYSTEM)
        page.get_by_label("Name", exact=True).fill("web-on-slurm")
        page.get_by_label("Script", exact=True).fill(script)
        page.get_by_role("button", name="Submit").click()
        page.wait_for_url(f"{slurm_gateway.url}/ui/jobs/{SYSTEM}/*")
        output = page.locator("#job-output")
        expect(output).to_contain_text("first")  # shown while the job waits for its gate
        job_id = page.url.rsplit("/", 1)[1]
        with slurm_gateway.client(token) as alice:
            running = lambda j: j["state"] == "RUNNING"  # noqa: E731 - the watcher may lag
            job = wait_for_job(alice, job_id, running, system=SYSTEM)
            assert "second" not in output.inner_text()  # the job waits: this was live
            path = f"{job['working_directory']}/{gate}"
            put = alice.put(
                f"/api/v1/systems/{SYSTEM}/files/upload", params={"path": path}, content=b""
            )
            assert put.status_code == 201, put.text
            expect(output).to_have_text("first\nsecond\n")
            expect(page.locator("#job-state")).to_have_text("COMPLETED")
            ended = wait_for_job(alice, job_id, lambda j: j["state"] == "COMPLETED", system=SYSTEM)
            assert ended["name"] == "web-on-slurm"
            alice.delete(f"/api/v1/systems/{SYSTEM}/files/rm", params={"path": path})
    finally:
        context.close()
