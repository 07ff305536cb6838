"""Jobs from an admin's template (its parameters a form, each value checked, a hostile one
inert in the job) and from the user's own saved scripts, in the browser."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import expect

from tests.support.gateway_process import TEST_CONFIG, GatewayProcess, running_gateway
from tests.support.jobs import wait_for_job
from tests.webui.conftest import UiUser, with_axe
from tests.webui.test_accessibility import scanned

TEMPLATES = """
[[ui.job_templates]]
name = "greet"
description = "Says hello, a few times"
script = '''#!/bin/bash
for i in $(seq {times}); do printf '%s %s\\n' {greeting} {who}; done
'''
parameters = [
  { name = "who", label = "Whom to greet", max_length = 80 },
  { name = "times", type = "integer", minimum = 1, maximum = 5, default = "2" },
  { name = "greeting", type = "choice", choices = ["hello", "goodbye"] },
]
"""
HOSTILE = "$(touch pwned) `id` <img src=x onerror=alert(1)>"


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    """This module's own gateway, with a job template (the ``ui`` fixture signs in here)."""
    yield from running_gateway(tmp_path_factory.mktemp("gateway"), TEST_CONFIG + TEMPLATES)


def test_a_job_from_a_template_runs_with_the_values_as_data(ui: UiUser) -> None:
    ui.goto("/ui/jobs/new")
    ui.page.get_by_role("link", name="greet").click()
    ui.page.get_by_label("Whom to greet").fill(HOSTILE)
    ui.page.get_by_label("times").fill("9")
    ui.page.get_by_role("button", name="Submit").click()
    expect(ui.page.get_by_role("alert")).to_contain_text("from 1 to 5")  # refused: no job
    assert ui.api.get("/api/v1/systems/local/jobs").json()["items"] == []
    ui.page.get_by_label("times").fill("2")
    ui.page.get_by_label("greeting").select_option("goodbye")
    ui.page.get_by_role("button", name="Submit").click()
    ui.page.wait_for_url(f"{ui.base}/ui/jobs/local/*")
    expect(ui.page.locator("#job-output")).to_have_text(f"goodbye {HOSTILE}\n" * 2)
    job_id = ui.page.url.rsplit("/", 1)[1]
    job = wait_for_job(ui.api, job_id, lambda j: j["state"] == "COMPLETED")
    assert job["name"] == "greet"
    listed = ui.api.get("/api/v1/systems/local/files/ls", params={"path": job["working_directory"]})
    assert "pwned" not in {entry["name"] for entry in listed.json()["entries"]}
    assert ui.dialogs == [] and ui.page.locator("main img").count() == 0


def test_a_saved_script_comes_back_on_the_form(ui: UiUser) -> None:
    script = "#!/bin/bash\necho kept for later\n"
    ui.goto("/ui/jobs/new")
    ui.page.get_by_label("Script").fill(script)
    ui.page.get_by_label("Keep it for later as").fill("later")
    ui.page.get_by_role("button", name="Submit").click()
    expect(ui.page.locator("#job-output")).to_have_text("kept for later\n")
    home = ui.api.get("/api/v1/systems/local").json()["home"]
    saved = ui.api.get(
        "/api/v1/systems/local/files/download", params={"path": f"{home}/.hpcgate/scripts/later.sh"}
    )
    assert saved.text == script  # a file of the user's own, in their home
    ui.goto("/ui/jobs/new")
    ui.page.get_by_role("link", name="later").click()
    expect(ui.page.get_by_label("Script", exact=True)).to_have_value(script)
    with_axe(ui.context)
    pages = {"job-template": "/ui/templates/greet", "job-new-saved": "/ui/jobs/new?saved=later"}
    assert scanned(ui.page, ui.base, pages) == {}
    assert ui.goto("/ui/jobs/new?saved=../../etc/passwd") == 422
    assert ui.goto("/ui/templates/nosuch") == 404
