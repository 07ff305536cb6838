"""Large files dropped on the page go as resumable uploads in pieces: a 20 MiB file
downloads back identical; with one piece's connection broken (Playwright aborts it) the
page asks the gateway where the upload stands and goes on, and the file is identical."""

from __future__ import annotations

import os
from pathlib import Path

from playwright.sync_api import Route, expect

from tests.webui.conftest import UiUser
from tests.webui.test_files import _home, drop_file

SIZE = 20 << 20
PIECE = 4 << 20  # static/app.js's


def test_a_large_file_uploads_in_pieces_and_downloads_back_identical(
    ui: UiUser, tmp_path: Path
) -> None:
    home = _home(ui)
    ui.api.post("/api/v1/systems/local/files/mkdir", json={"path": home, "parents": True})
    ui.goto("/ui/files/local")
    pieces: list[str] = []
    ui.page.on(
        "request",
        lambda r: pieces.append(r.url) if r.method == "PUT" and "/uploads/" in r.url else None,
    )
    data = os.urandom(SIZE)
    drop_file(ui, "big.bin", data)
    link = ui.page.get_by_role("link", name="Download big.bin")
    expect(link).to_be_visible(timeout=120_000)  # the page reloads once every upload is done
    assert len(pieces) == SIZE // PIECE
    with ui.page.expect_download() as download:
        link.click()
    saved = tmp_path / "downloaded"
    download.value.save_as(saved)
    assert saved.read_bytes() == data


def test_a_broken_piece_is_resumed_from_where_the_gateway_stands(ui: UiUser) -> None:
    home = _home(ui)
    ui.api.post("/api/v1/systems/local/files/mkdir", json={"path": home, "parents": True})
    ui.goto("/ui/files/local")
    broken: list[str] = []
    asked: list[str] = []

    def route(hit: Route) -> None:
        request = hit.request
        if request.method == "PUT" and f"offset={PIECE}" in request.url and not broken:
            broken.append(request.url)
            hit.abort("connectionreset")
            return
        if request.method == "GET" and broken:
            asked.append(request.url)
        hit.continue_()

    ui.page.route("**/ui/files/uploads/*", route)
    data = os.urandom(10 << 20)
    drop_file(ui, "resumed.bin", data)
    expect(ui.page.get_by_role("link", name="Download resumed.bin")).to_be_visible(timeout=120_000)
    assert broken and asked  # one piece broke off; the page asked where it stood
    got = ui.api.get("/api/v1/systems/local/files/download", params={"path": f"{home}/resumed.bin"})
    assert got.status_code == 200 and got.content == data
