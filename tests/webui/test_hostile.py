"""Hostile names (a job's, a file's) are shown as text: no script of theirs runs."""

from __future__ import annotations

from playwright.sync_api import expect

from tests.webui.conftest import UiUser

SCRIPT = "<script>alert('job')</script>"
ATTRIBUTE = '"><img src=x onerror=alert(1)>'
FILE_SCRIPT = "<script>alert('file')<"  # a file name holds no '/'
PAGES = ("/ui/dashboard", "/ui/jobs", "/ui/files/local")


def test_hostile_job_and_file_names_render_inert(ui: UiUser) -> None:
    jobs = []
    for name in (SCRIPT, ATTRIBUTE):
        spec = {"name": name, "script": "#!/bin/bash\necho '<b>hi</b>'\n"}
        answer = ui.api.post("/api/v1/systems/local/jobs", json=spec)
        assert answer.status_code == 201, answer.text
        jobs.append(answer.json()["id"])
    home = ui.api.get("/api/v1/systems/local").json()["home"]
    ui.api.post("/api/v1/systems/local/files/mkdir", json={"path": home, "parents": True})
    for name in (FILE_SCRIPT, ATTRIBUTE):
        put = ui.api.put(
            "/api/v1/systems/local/files/upload", params={"path": f"{home}/{name}"}, content=b"x"
        )
        assert put.status_code == 201, put.text

    for path in (*PAGES, *(f"/ui/jobs/local/{job}" for job in jobs)):
        ui.goto(path)
        ui.page.wait_for_load_state("load")
        assert ui.page.locator("img").count() == 0, path  # the payload made no element
        assert ui.page.locator("main script").count() == 0, path
    ui.goto(f"/ui/jobs/local/{jobs[0]}")
    expect(ui.page.locator("#job-output")).to_have_text("<b>hi</b>\n")  # text, not markup
    ui.goto("/ui/files/local")
    expect(ui.page.locator("td.name", has_text=FILE_SCRIPT)).to_have_count(1)
    expect(ui.page.locator("td.name", has_text=ATTRIBUTE)).to_have_count(1)
    ui.goto("/ui/jobs")
    expect(ui.page.locator("td.name", has_text=SCRIPT)).to_have_count(1)
    assert ui.dialogs == []  # no alert() ran anywhere
