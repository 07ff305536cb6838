"""Files in the browser: a file dropped on the page is uploaded (with progress) and
downloads back identical; mkdir, edit, rename, delete after a confirmation."""

from __future__ import annotations

import base64
import os
from pathlib import Path

from playwright.sync_api import expect

from tests.webui.conftest import UiUser

DROP = """([name, data]) => {
  const bytes = Uint8Array.from(atob(data), (c) => c.charCodeAt(0));
  const transfer = new DataTransfer();
  transfer.items.add(new File([bytes], name));
  const zone = document.getElementById("drop");
  zone.dispatchEvent(new DragEvent("dragover", {dataTransfer: transfer, bubbles: true}));
  zone.dispatchEvent(new DragEvent("drop", {dataTransfer: transfer, bubbles: true}));
}"""


def _home(ui: UiUser) -> str:
    answer = ui.api.get("/api/v1/systems/local")
    assert answer.status_code == 200, answer.text
    return str(answer.json()["home"])


def drop_file(ui: UiUser, name: str, data: bytes) -> None:
    """Drop a file on the directory's drop zone, as a person dragging it from their desktop."""
    ui.page.evaluate(DROP, [name, base64.b64encode(data).decode()])


def test_a_dropped_file_uploads_and_downloads_back_identical(ui: UiUser, tmp_path: Path) -> None:
    home = _home(ui)
    ui.api.post("/api/v1/systems/local/files/mkdir", json={"path": home, "parents": True})
    ui.goto("/ui/files/local")
    data = os.urandom(5_000_000)  # past the 4 MiB cap on other bodies: streamed to disk
    drop_file(ui, "data.bin", data)
    link = ui.page.get_by_role("link", name="Download data.bin")
    expect(link).to_be_visible()  # the page reloads once every upload is done
    with ui.page.expect_download() as download:
        link.click()
    saved = tmp_path / "downloaded"
    download.value.save_as(saved)
    assert saved.read_bytes() == data
    assert download.value.suggested_filename == "data.bin"

    drop_file(ui, "data.bin", b"second")  # the name is taken: refused, nothing replaced
    expect(ui.page.locator("#uploads li[data-status=failed]")).to_contain_text("409")
    ui.page.get_by_label("Replace files of the same name").check()
    with ui.page.expect_navigation():  # the page reloads once every upload is done
        drop_file(ui, "data.bin", b"second")
    read = ui.api.get("/api/v1/systems/local/files/view", params={"path": f"{home}/data.bin"})
    assert read.json()["content"] == "second"


def test_mkdir_edit_rename_and_delete(ui: UiUser) -> None:
    home = _home(ui)
    ui.api.post("/api/v1/systems/local/files/mkdir", json={"path": home, "parents": True})
    ui.api.put(
        "/api/v1/systems/local/files/upload", params={"path": f"{home}/notes.txt"}, content=b"v1\n"
    )
    ui.goto("/ui/files/local")
    ui.page.get_by_label("New directory").fill("results")
    ui.page.get_by_role("button", name="Create").click()
    expect(ui.page.get_by_role("link", name="results/")).to_be_visible()

    ui.page.get_by_role("link", name="Edit notes.txt").click()
    ui.page.get_by_label("Contents").fill("v2\nsecond line\n")
    ui.page.get_by_role("button", name="Save").click()
    expect(ui.page.get_by_role("status")).to_have_text("Saved.")
    read = ui.api.get("/api/v1/systems/local/files/view", params={"path": f"{home}/notes.txt"})
    assert read.json()["content"] == "v2\nsecond line\n"

    ui.goto("/ui/files/local")
    ui.page.get_by_text("Rename notes.txt").click()
    row = ui.page.locator("tr", has_text="notes.txt")
    row.get_by_label("New name").fill("renamed.txt")
    row.get_by_role("button", name="Rename").click()
    expect(ui.page.get_by_role("link", name="Download renamed.txt")).to_be_visible()

    ui.page.get_by_role("link", name="Delete renamed.txt").click()
    expect(ui.page.get_by_role("heading")).to_have_text("Delete renamed.txt?")
    ui.page.get_by_role("button", name="Delete").click()
    expect(ui.page.get_by_role("link", name="Download renamed.txt")).to_have_count(0)
    listing = ui.api.get("/api/v1/systems/local/files/ls", params={"path": home}).json()
    assert sorted(e["name"] for e in listing["entries"]) == ["results"]
