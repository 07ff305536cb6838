"""The web interface's pure parts: sessions and their bounds, the nodes chart, breadcrumbs,
the names a form may give, which paths are sandboxed."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from hpcgate.model.errors import Invalid
from hpcgate.model.status import Node
from hpcgate.webui import sessions as sessions_module
from hpcgate.webui.chart import BAR, NODES_SHOWN, chart
from hpcgate.webui.files import breadcrumbs, entry_name
from hpcgate.webui.headers import OPENED, SecurityHeaders, within
from hpcgate.webui.sessions import Sessions


def test_a_session_is_found_by_its_id_only_and_ends_when_closed() -> None:
    store = Sessions()
    session_id, session = store.open("secret-token", "alice")
    assert store.get(session_id) is session
    assert store.get(session_id + "x") is None
    assert store.get(None) is None and store.get("") is None and store.get("a" * 500) is None
    assert session.csrf_matches(session.csrf) and not session.csrf_matches("forged")
    assert not session.csrf_matches(None)
    store.close(session_id)
    assert store.get(session_id) is None


def test_an_idle_session_expires() -> None:
    store = Sessions()
    session_id, session = store.open("t", "alice")
    session.seen -= sessions_module.IDLE_SECONDS + 1
    assert store.get(session_id) is None


def test_past_the_most_sessions_the_least_recently_used_goes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(sessions_module, "MAX_SESSIONS", 3)
    store = Sessions()
    opened = [store.open(f"t{i}", "alice") for i in range(3)]
    opened[0][1].seen -= 10  # the oldest in use
    newest, _ = store.open("t3", "alice")
    assert store.get(opened[0][0]) is None
    assert all(store.get(session_id) is not None for session_id, _ in opened[1:])
    assert store.get(newest) is not None


def _node(name: str, cpus: int, used: int, state: str = "MIXED") -> Node:
    return Node(
        name=name,
        state=state,
        partitions=["p"],
        cpus=cpus,
        cpus_allocated=used,
        memory=1000,
        memory_allocated=250,
        gpus=0,
        features=[],
    )


def test_the_chart_scales_each_bar_and_bounds_the_nodes_drawn() -> None:
    drawn = chart([_node("a", 4, 2), _node("b", 8, 8), _node("c", 0, 0, "DOWN+DRAIN")])
    assert [bar.cpu_width for bar in drawn.bars] == [BAR // 2, BAR, 0]
    assert [bar.memory_width for bar in drawn.bars] == [BAR // 4] * 3
    assert [bar.down for bar in drawn.bars] == [False, False, True]
    assert (drawn.cpus_used, drawn.cpus_total, drawn.hidden) == (10, 12, 0)
    many = chart([_node(f"n{i}", 2, 1) for i in range(NODES_SHOWN + 5)])
    assert len(many.bars) == NODES_SHOWN and many.hidden == 5


def test_breadcrumbs_lead_to_each_ancestor_inside_the_roots() -> None:
    crumbs = breadcrumbs("/home/alice/runs", ["/home/alice", "/scratch"])
    assert [(c.name, c.path, c.linked) for c in crumbs] == [
        ("/", "/", False),
        ("home", "/home", False),
        ("alice", "/home/alice", True),
        ("runs", "/home/alice/runs", True),
    ]
    assert [c.path for c in breadcrumbs("/", ["/"])] == ["/"]
    assert not breadcrumbs("/home/alicex", ["/home/alice"])[-1].linked


@pytest.mark.parametrize("name", ["", " ", ".", "..", "a/b", "x\x00", "n" * 256])
def test_a_name_that_is_not_one_directory_entry_is_refused(name: str) -> None:
    with pytest.raises(Invalid):
        entry_name(name)


def test_a_name_is_kept_as_given_but_for_surrounding_spaces() -> None:
    assert entry_name(' "><img src=x> ') == '"><img src=x>'


def test_only_a_services_own_pages_are_sandboxed() -> None:
    def inside(path: str) -> str:
        return within({"type": "http", "path": path, "root_path": "/ui"})

    assert inside("/ui/open/lab/").startswith(OPENED)
    for page in ("/ui/services/open", "/ui/functions/open/invocations/x", "/ui/files/open/"):
        assert not inside(page).startswith(OPENED), page


def _answer_headers(path: str) -> dict[bytes, list[bytes]]:
    """The headers SecurityHeaders gives an answer to a GET of ``path`` (under /ui)."""
    sent: list[dict[str, Any]] = []

    async def page(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})

    async def record(message: Any) -> None:
        sent.append(message)

    async def nothing() -> Any:
        return {"type": "http.disconnect"}

    scope = {"type": "http", "path": path, "root_path": "/ui"}
    asyncio.run(SecurityHeaders(page)(scope, nothing, record))
    headers: dict[bytes, list[bytes]] = {}
    for name, value in sent[0]["headers"]:
        headers.setdefault(name, []).append(value)
    return headers


def test_only_the_assets_may_be_cached_not_a_page_whose_path_holds_static() -> None:
    assert b"cache-control" not in _answer_headers("/ui/static/app.css")
    for page in ("/ui/open/lab/static/notebook.html", "/ui/jobs/static/1", "/ui/files"):
        assert _answer_headers(page)[b"cache-control"] == [b"no-store"], page
