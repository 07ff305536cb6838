"""File tools in the browser: a file's sha256 equal to hashlib's; copy to a typed path
(both there after); archive a directory and extract it elsewhere (the same names); each a
task whose page follows it to its end, a failure with its message; replacing asks first.
The new pages pass axe-core and stay light; hostile names render inert there."""

from __future__ import annotations

import hashlib
import os
from urllib.parse import quote

from playwright.sync_api import expect

from tests.webui.conftest import UiUser, with_axe
from tests.webui.test_accessibility import scanned
from tests.webui.test_hostile import ATTRIBUTE, FILE_SCRIPT

FILES = "/api/v1/systems/local/files"


def _home(ui: UiUser) -> str:
    home = str(ui.api.get("/api/v1/systems/local").json()["home"])
    ui.api.post(f"{FILES}/mkdir", json={"path": home, "parents": True})
    return home


def _put(ui: UiUser, path: str, data: bytes) -> None:
    ui.api.post(f"{FILES}/mkdir", json={"path": os.path.dirname(path), "parents": True})
    answer = ui.api.put(f"{FILES}/upload", params={"path": path}, content=data)
    assert answer.status_code == 201, answer.text


def _names(ui: UiUser, path: str) -> list[str]:
    listing = ui.api.get(f"{FILES}/ls", params={"path": path}).json()
    return sorted(e["name"] for e in listing["entries"])


def _tools(ui: UiUser, path: str) -> None:
    ui.goto("/ui/files/local?path=" + quote(os.path.dirname(path)))
    ui.page.get_by_role("link", name=f"More on {os.path.basename(path)}").click()


def _run(ui: UiUser, target_label: str, target: str, button: str) -> None:
    ui.page.get_by_label(target_label).fill(target)
    ui.page.get_by_role("button", name=button, exact=True).click()
    expect(ui.page.locator("#task-state-name")).to_have_text("completed", timeout=60_000)


def test_checksum_copy_archive_and_extract(ui: UiUser) -> None:
    home = _home(ui)
    data = os.urandom(300_000)
    _put(ui, f"{home}/src/a.bin", data)
    _put(ui, f"{home}/src/sub/b.txt", b"hello\n")

    _tools(ui, f"{home}/src/a.bin")
    ui.page.get_by_role("link", name="Compute its sha256").click()
    expect(ui.page.locator("#sha256")).to_have_text(hashlib.sha256(data).hexdigest())

    _run(ui, "Copy to (a path)", f"{home}/src/copy.bin", "Copy")
    assert _names(ui, f"{home}/src") == ["a.bin", "copy.bin", "sub"]
    ui.goto(f"/ui/files/local?path={home}/src")
    expect(ui.page.get_by_role("link", name="Download copy.bin")).to_be_visible()
    expect(ui.page.get_by_role("link", name="Download a.bin")).to_be_visible()

    _tools(ui, f"{home}/src")
    _run(
        ui,
        "Archive to make (.tar.gz, .tar.bz2, .tar.xz or .tar)",
        f"{home}/src.tgz",
        "Make the archive",
    )
    _tools(ui, f"{home}/src.tgz")
    _run(ui, "Into a new directory", f"{home}/out/again", "Extract")
    assert _names(ui, f"{home}/out/again") == ["src"]  # the archive holds the directory
    assert _names(ui, f"{home}/out/again/src") == _names(ui, f"{home}/src")
    assert _names(ui, f"{home}/out/again/src/sub") == ["b.txt"]


def test_replacing_asks_first_and_a_failure_shows_its_message(ui: UiUser) -> None:
    home = _home(ui)
    _put(ui, f"{home}/one.txt", b"one")
    _put(ui, f"{home}/two.txt", b"two")
    _put(ui, f"{home}/bad.tar", b"not an archive at all")
    _tools(ui, f"{home}/one.txt")
    ui.page.get_by_label("Copy to (a path)").fill(f"{home}/two.txt")
    ui.page.get_by_label("Replace what is there").first.check()
    ui.page.get_by_role("button", name="Copy", exact=True).click()
    expect(ui.page.get_by_role("heading", level=1)).to_have_text("Replace what is there?")
    view = {"path": f"{home}/two.txt"}
    assert ui.api.get(f"{FILES}/view", params=view).json()["content"] == "two"
    ui.page.get_by_role("button", name="Replace").click()
    expect(ui.page.locator("#task-state-name")).to_have_text("completed", timeout=60_000)
    assert ui.api.get(f"{FILES}/view", params=view).json()["content"] == "one"

    _tools(ui, f"{home}/bad.tar")
    ui.page.get_by_label("Into a new directory").fill(f"{home}/bad")
    ui.page.get_by_role("button", name="Extract").click()
    expect(ui.page.locator("#task-state-name")).to_have_text("failed", timeout=60_000)
    expect(ui.page.locator("#task-failure")).not_to_be_empty()


def test_the_tool_pages_pass_axe_and_hostile_names_render_inert(ui: UiUser) -> None:
    home = _home(ui)
    for name in (FILE_SCRIPT, ATTRIBUTE):
        _put(ui, f"{home}/{name}", b"x")
    moved = ui.api.post(
        f"{FILES}/cp", json={"source": f"{home}/{ATTRIBUTE}", "target": f"{home}/{ATTRIBUTE}.2"}
    )
    assert moved.status_code == 202, moved.text
    task = moved.json()["id"]
    with_axe(ui.context)
    pages = {
        "tools": f"/ui/files/local/tools?path={quote(f'{home}/{FILE_SCRIPT}')}&sum=sha256",
        "directory-tools": f"/ui/files/local/tools?path={quote(home)}",
        "task": f"/ui/files/local/tasks/{task}",
    }
    assert scanned(ui.page, ui.base, pages) == {}
    assert ui.dialogs == []
    assert ui.refused == []
