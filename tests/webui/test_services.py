"""Services in the browser: start one from the form, watch its replica become ready, open
it through the proxy in a new tab (sandboxed, no cookie passed on), stop it."""

from __future__ import annotations

import uuid

from playwright.sync_api import expect

from tests.support.gateway_process import GatewayProcess
from tests.support.services import backend_script, create_service
from tests.webui.conftest import UiUser, issue_token

#: The answer's line holds its first token but is not done yet.
PARTIAL = """() => {
  const answer = document.querySelectorAll('#transcript li')[1];
  return answer !== undefined && answer.textContent.includes('0 ') && !answer.dataset.done;
}"""


def test_start_watch_open_and_stop_a_service(ui: UiUser) -> None:
    name = f"w{uuid.uuid4().hex[:8]}"
    ui.goto("/ui/services")
    ui.page.get_by_label("Name (lower-case").fill(name)
    ui.page.get_by_label("Script").fill(backend_script())
    ui.page.get_by_role("button", name="Start").click()
    ui.page.wait_for_url(f"{ui.base}/ui/services/{name}")
    expect(ui.page.locator("#service-status")).to_have_text("Ready", timeout=60_000)  # polled
    expect(ui.page.locator("#replicas tbody")).to_contain_text("ready")

    with ui.context.expect_page() as opened:
        ui.page.get_by_role("link", name="Open in a new tab").click()
    tab = opened.value
    tab.wait_for_load_state()
    assert tab.url == f"{ui.base}/ui/open/{name}/"
    answer = tab.goto(f"{ui.base}/ui/open/{name}/path/here?x=1")
    assert answer is not None and answer.status == 200
    assert tab.locator("body").inner_text() == "/path/here?x=1"  # what the replica was sent
    headers = answer.all_headers()
    assert "sandbox" in headers["content-security-policy"]
    assert "set-cookie" not in headers
    tab.close()

    ui.page.get_by_role("button", name="Stop").click()
    expect(ui.page.locator("#service-status")).to_contain_text("Stopped")  # polling ended
    assert ui.api.get(f"/api/v1/services/{name}").status_code == 404
    assert ui.dialogs == [] and ui.refused == []


def test_a_refused_spec_is_shown_on_the_form(ui: UiUser) -> None:
    ui.goto("/ui/services")
    ui.page.get_by_label("Name (lower-case").fill("bad")
    ui.page.get_by_label("Script").fill("no interpreter line")
    ui.page.get_by_role("button", name="Start").click()
    expect(ui.page.locator("ul.error")).to_contain_text("#!")
    assert ui.api.get("/api/v1/services/bad").status_code == 404


def test_another_users_service_is_not_found(ui: UiUser, gateway: GatewayProcess) -> None:
    name = f"o{uuid.uuid4().hex[:8]}"
    body = {"name": name, "system": "local", "script": backend_script(), "min_replicas": 0}
    with gateway.client(issue_token(gateway, f"other{name}")) as other:
        assert other.post("/api/v1/services", json=body).status_code == 201
        assert ui.goto(f"/ui/services/{name}") == 404
        assert ui.goto(f"/ui/open/{name}/") == 404
        ui.goto("/ui/services")
        expect(ui.page.get_by_role("link", name=name)).to_have_count(0)
        assert other.delete(f"/api/v1/services/{name}").status_code == 202


def test_chat_with_a_model_shows_the_tokens_as_they_stream(ui: UiUser) -> None:
    """The test backend's completions stream five tokens 0.2 s apart."""
    model = f"m{uuid.uuid4().hex[:8]}"
    name = create_service(ui.api, models=[model])
    ui.goto(f"/ui/services/{name}")
    ui.page.get_by_role("link", name="Chat").click()
    ui.page.get_by_label("Ask as").select_option("completions")
    ui.page.get_by_label("Message").fill("count")
    ui.page.get_by_role("button", name="Send").click()
    answer = ui.page.locator("#transcript li").nth(1)
    ui.page.wait_for_function(PARTIAL, timeout=60_000)  # a token shown before the last came
    expect(answer).to_have_text(f"{model}: 0 1 2 3 4 ")
    expect(answer).to_have_attribute("data-done", "true")
    assert ui.dialogs == [] and ui.refused == []
    body = {"model": model, "prompt": "count"}  # the session's cookie, but no CSRF token
    forged = ui.context.request.post(f"{ui.base}/ui/v1/completions", data=body)
    assert forged.status == 403
    assert ui.api.delete(f"/api/v1/services/{name}").status_code == 202
