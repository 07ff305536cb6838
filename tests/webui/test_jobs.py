"""Jobs in the browser: submit from the form and watch the output arrive while the job
runs, then its end; cancel; resubmit."""

from __future__ import annotations

from playwright.sync_api import expect

from tests.support.jobs import wait_for_job
from tests.webui.conftest import UiUser

#: Writes 'first', then waits (at most 60 s) for a file the test creates, then 'second':
#: 'first' on the page before the file exists is output shown live, not at the end.
GATED = (
    "#!/bin/bash\necho first\nfor i in $(seq 600); do [ -e go ] && break; sleep 0.1; done\n"
    "echo second\n"
)


def _submit(ui: UiUser, name: str, script: str) -> str:
    ui.goto("/ui/jobs/new")
    ui.page.get_by_label("Name").fill(name)
    ui.page.get_by_label("Script").fill(script)
    ui.page.get_by_role("button", name="Submit").click()
    ui.page.wait_for_url(f"{ui.base}/ui/jobs/local/*")
    return ui.page.url.rsplit("/", 1)[1]


def test_a_submitted_job_shows_its_output_live_and_its_end(ui: UiUser) -> None:
    job_id = _submit(ui, "live", GATED)
    output = ui.page.locator("#job-output")
    expect(output).to_contain_text("first")
    job = ui.api.get(f"/api/v1/systems/local/jobs/{job_id}").json()
    assert job["state"] == "RUNNING" and "second" not in output.inner_text()
    gate = f"{job['working_directory']}/go"
    put = ui.api.put("/api/v1/systems/local/files/upload", params={"path": gate}, content=b"")
    assert put.status_code == 201, put.text
    expect(output).to_have_text("first\nsecond\n")
    expect(ui.page.locator("#job-state")).to_have_text("COMPLETED")
    expect(ui.page.locator("#job-events")).to_contain_text("RUNNING")


def test_cancel_and_resubmit(ui: UiUser) -> None:
    job_id = _submit(ui, "held", GATED)
    ui.page.get_by_role("button", name="Cancel").click()
    ended = wait_for_job(ui.api, job_id, lambda job: job["state"] == "CANCELLED")
    assert ended["name"] == "held"
    ui.goto(f"/ui/jobs/local/{job_id}")
    ui.page.get_by_role("button", name="Resubmit").click()
    ui.page.wait_for_url(lambda url: not url.endswith(f"/{job_id}"))
    again = ui.page.url.rsplit("/", 1)[1]
    job = ui.api.get(f"/api/v1/systems/local/jobs/{again}").json()
    assert job["name"] == "held" and again != job_id
    ui.api.delete(f"/api/v1/systems/local/jobs/{again}")


def test_the_list_filters_by_state(ui: UiUser) -> None:
    job_id = _submit(ui, "quick", "#!/bin/bash\necho done\n")
    wait_for_job(ui.api, job_id, lambda job: job["state"] == "COMPLETED")
    ui.goto("/ui/jobs")
    rows = ui.page.locator("#job-rows tbody tr")
    expect(rows.first).to_contain_text("quick")
    ui.page.get_by_label("State").select_option("RUNNING")  # htmx swaps the rows
    expect(rows.first).to_have_text("None.")
    assert "state=RUNNING" in ui.page.url
    ui.page.get_by_label("State").select_option("")  # any state again
    expect(rows.first).to_contain_text("quick")
    ui.page.get_by_label("Name").fill("nothing-by-this-name")
    ui.page.get_by_role("button", name="Filter").click()
    expect(rows.first).to_have_text("None.")
    ui.page.go_back()  # htmx asks for the whole page again (it keeps none in sessionStorage)
    expect(ui.page.get_by_role("heading", name="Jobs")).to_be_visible()
    expect(ui.page.get_by_label("State")).to_be_visible()
    assert ui.page.evaluate("sessionStorage.getItem('htmx-history-cache')") is None
