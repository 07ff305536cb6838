"""Functions in the browser, with a real worker (a job of the embedded scheduler): the form
generated from the input schema, the output shown as it is yielded, the result, an error,
past invocations."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from playwright.sync_api import expect

from tests.support.functions import delete_all, register
from tests.support.gateway_process import GatewayProcess
from tests.support.services import services_gateway
from tests.webui.conftest import UiUser, with_axe
from tests.webui.test_accessibility import scanned

#: Yields a line, then waits (at most 60 s) for a file the test creates, then the others:
#: the first on the page before the file exists is output shown as it came.
GATED = """
import os, time

def f(greeting, times=2, loud=False, mood="calm", extra=None, gate=""):
    yield greeting + " 1"
    for _ in range(600):
        if os.path.exists(gate):
            break
        time.sleep(0.1)
    for i in range(1, times):
        yield f"{greeting} {i + 1}"
    if mood == "cross":
        raise ValueError("in no mood")
    return {"loud": loud, "mood": mood, "extra": extra}
"""
SCHEMA = {
    "type": "object",
    "properties": {
        "greeting": {"type": "string", "description": "What to say"},
        "times": {"type": "integer", "default": 2},
        "loud": {"type": "boolean"},
        "mood": {"enum": ["calm", "cross"], "default": "calm"},
        "extra": {"type": "array", "items": {"type": "integer"}},
        "gate": {"type": "string"},
    },
    "required": ["greeting"],
}


CONFIG = """
service_interval = 0.2
service_wait_seconds = 60

[systems.local]
scheduler = "embedded"
status_interval = 0.2
slots = 8
"""


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    """A gateway of this module's: the session's bounds a batch script to 4 KiB, less than
    a function's worker script (the worker's own code and the source) takes."""
    with services_gateway(tmp_path_factory.mktemp("gateway"), CONFIG) as server:
        yield server


@pytest.fixture
def function(ui: UiUser) -> Iterator[str]:
    name = register(ui.api, GATED, name=f"f{uuid.uuid4().hex[:8]}", input_schema=SCHEMA)
    yield name
    delete_all(ui.api)


def test_invoke_from_the_generated_form_and_watch_it_stream(ui: UiUser, function: str) -> None:
    home = ui.api.get("/api/v1/systems/local").json()["home"]
    gate = f"{home}/gate-{function}"
    ui.goto("/ui/functions")
    ui.page.get_by_role("link", name=function).click()
    expect(ui.page.get_by_label("times")).to_have_value("2")  # the schema's default
    ui.page.get_by_label("greeting (required)").fill("hi")
    ui.page.get_by_label("times").fill("3")
    ui.page.get_by_label("loud").check()
    ui.page.get_by_label("extra (JSON)").fill("[1, 2]")
    ui.page.get_by_label("gate").fill(gate)
    ui.page.get_by_role("button", name="Invoke").click()
    ui.page.wait_for_url(f"{ui.base}/ui/functions/{function}/invocations/*")
    output = ui.page.locator("#call-output")
    expect(output).to_have_text("hi 1\n", timeout=60_000)  # the worker may be starting
    assert "hi 2" not in output.inner_text()
    put = ui.api.put("/api/v1/systems/local/files/upload", params={"path": gate}, content=b"")
    assert put.status_code == 201, put.text
    expect(output).to_have_text("hi 1\nhi 2\nhi 3\n")
    expect(ui.page.locator("#call-result")).to_contain_text('"loud": true')
    expect(ui.page.locator("#call-result")).to_contain_text('"extra": [\n    1,\n    2\n  ]')
    expect(ui.page.locator("#call-state")).to_have_text("succeeded")

    ui.goto(f"/ui/functions/{function}")  # an error this time; then both in the past ones
    ui.page.get_by_label("greeting (required)").fill("oh")
    ui.page.get_by_label("times").fill("1")
    ui.page.get_by_label("mood").select_option('"cross"')
    ui.page.get_by_label("gate").fill(gate)
    ui.page.get_by_role("button", name="Invoke").click()
    expect(ui.page.locator("#call-error")).to_contain_text("ValueError: in no mood")
    expect(ui.page.locator("#call-state")).to_have_text("failed")
    ui.goto(f"/ui/functions/{function}")
    rows = ui.page.locator("table tbody tr")
    expect(rows).to_have_count(2)
    expect(rows.first).to_contain_text("failed")
    expect(rows.last).to_contain_text("succeeded")
    assert ui.dialogs == [] and ui.refused == []


def test_input_the_schema_refuses_is_shown_and_nothing_runs(ui: UiUser, function: str) -> None:
    ui.goto(f"/ui/functions/{function}")
    ui.page.get_by_label("greeting (required)").fill("hi")
    ui.page.get_by_label("times").fill("many")
    ui.page.get_by_role("button", name="Invoke").click()
    expect(ui.page.locator("ul.error")).to_contain_text("times: not an integer")
    ui.page.get_by_label("times").fill("2")
    ui.page.get_by_label("extra (JSON)").fill('["a"]')
    ui.page.get_by_role("button", name="Invoke").click()
    expect(ui.page.locator("ul.error")).to_contain_text("does not match")
    expect(ui.page.get_by_label("extra (JSON)")).to_have_value('["a"]')  # kept to correct
    assert ui.api.get(f"/api/v1/functions/{function}/invocations").json() == []


#: Output, result and the schema's names and values of markup: all shown as text.
HOSTILE = """
def f(**kw):
    yield "<script>alert('out')</script>"
    yield {"x": '"><img src=x onerror=alert(1)>'}
    return "<img src=x onerror=alert(2)>"
"""
HOSTILE_SCHEMA = {
    "type": "object",
    "properties": {
        '"><img src=x onerror=alert(3)>': {
            "type": "string",
            "description": "<script>alert('d')</script>",
        },
        "pick": {"enum": ["<script>alert('e')</script>"]},
    },
}


def test_hostile_output_and_schema_render_inert(ui: UiUser) -> None:
    name = register(ui.api, HOSTILE, input_schema=HOSTILE_SCHEMA)
    try:
        ui.goto(f"/ui/functions/{name}")
        expect(ui.page.get_by_text("<script>alert('d')</script>")).to_have_count(1)
        ui.page.get_by_role("button", name="Invoke").click()
        expect(ui.page.locator("#call-result")).to_have_text('"<img src=x onerror=alert(2)>"')
        expect(ui.page.locator("#call-output")).to_contain_text("<script>alert('out')</script>")
        for path in ("/ui/functions", f"/ui/functions/{name}", ui.page.url[len(ui.base) :]):
            ui.goto(path)
            ui.page.wait_for_load_state("load")
            assert ui.page.locator("img").count() == 0, path
            assert ui.page.locator("main script").count() == 0, path
        assert ui.dialogs == []
    finally:
        delete_all(ui.api)


def test_the_function_pages_pass_axe_and_stay_light(ui: UiUser, function: str) -> None:
    with ui.api.stream(
        "POST",
        f"/api/v1/functions/{function}/invoke",
        json={"greeting": "hi", "times": 1, "gate": "/"},
    ) as answer:
        assert answer.status_code == 200, answer.read()
        key = answer.headers["hpcgate-invocation"]
    with_axe(ui.context)
    pages = {
        "functions": "/ui/functions",
        "function": f"/ui/functions/{function}",
        "invocation": f"/ui/functions/{function}/invocations/{key}",
    }
    assert scanned(ui.page, ui.base, pages) == {}
