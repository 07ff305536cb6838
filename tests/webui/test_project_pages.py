"""A project's services and functions on the web pages, over plain HTTP against a real
gateway (its function's worker a real job of the embedded scheduler): a member sees and
invokes, a viewer sees but gets no controls and is refused when it forges them, anyone
else is told they do not exist; and, in Chromium, the pages with a project's sections
pass axe."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import httpx
import pytest

from hpcgate.webui.schemaform import WHOLE
from tests.support.functions import ECHO, FUNCTIONS, register
from tests.support.gateway_process import GatewayProcess, user_client
from tests.support.services import admin_token, backend_script, services_gateway
from tests.webui.conftest import UiUser, with_axe
from tests.webui.test_accessibility import scanned
from tests.webui.test_functions import CONFIG

PROJECTS = "/api/v1/projects"
SERVICES = "/api/v1/services"

alice = user_client("alice")  # the project's owner
bob = user_client("bob")  # a member
vic = user_client("vic")  # a viewer
carol = user_client("carol")  # no role in it


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    with services_gateway(tmp_path_factory.mktemp("gateway"), CONFIG) as server:
        yield server


@pytest.fixture(scope="module")
def project(gateway: GatewayProcess, alice: httpx.Client) -> Iterator[str]:
    """alice's project, bob a member and vic a viewer of it, with alice's function
    ``echo`` (a worker kept) and service ``web`` (no replica until used)."""
    name = f"p{uuid.uuid4().hex[:8]}"
    with gateway.client(admin_token(gateway.home)) as admin:
        assert admin.post(PROJECTS, json={"name": name, "owner": "alice"}).status_code == 201
    for user, role in (("bob", "member"), ("vic", "viewer")):
        assert alice.put(f"{PROJECTS}/{name}/members/{user}", json={"role": role}).is_success
    register(alice, ECHO, name="echo", project=name, min_workers=1)
    body = {"name": "web", "project": name, "system": "local", "script": backend_script()}
    made = alice.post(SERVICES, json={**body, "min_replicas": 0})
    assert made.status_code == 201, made.text
    yield name
    for function in alice.get(FUNCTIONS, params={"project": name}).json():
        alice.delete(f"{FUNCTIONS}/{name}~{function['name']}")
    deadline = time.monotonic() + 60  # the pool's job ended: it would outlive the gateway
    while alice.get(FUNCTIONS, params={"project": name}).json():
        assert time.monotonic() < deadline
        time.sleep(0.2)


class Browserless:
    """A signed-in session over plain HTTP, posting forms as a page of the gateway would
    (its Origin, the page's CSRF token)."""

    def __init__(self, gateway: GatewayProcess, token: str) -> None:
        self.origin = gateway.url
        self.http = httpx.Client(base_url=gateway.url, timeout=60)
        signed = self.post("/ui/signin", {"token": token})
        assert signed.status_code == 303, signed.text
        self.csrf = self.page("/ui/dashboard").split('name="csrf" value="')[1].split('"')[0]

    def page(self, path: str, status: int = 200) -> str:
        answer = self.http.get(path)
        assert answer.status_code == status, (path, answer.text)
        return answer.text

    def post(self, path: str, data: dict[str, str]) -> httpx.Response:
        return self.http.post(path, data=data, headers={"Origin": self.origin})

    def submit(self, path: str, data: dict[str, str] | None = None) -> httpx.Response:
        return self.post(path, {"csrf": self.csrf, **(data or {})})


@pytest.fixture(scope="module")
def sessions(gateway: GatewayProcess, project: str) -> Iterator[dict[str, Browserless]]:
    """A session of each user's, once the project is made."""
    users = ("alice", "bob", "vic", "carol")
    made = {user: Browserless(gateway, gateway.token(user)) for user in users}
    yield made
    for session in made.values():
        session.http.close()


def test_a_member_sees_and_invokes_a_projects_function(
    project: str, sessions: dict[str, Browserless], bob: httpx.Client
) -> None:
    ref = f"{project}~echo"
    listed = sessions["bob"].page("/ui/functions")
    assert f'href="/ui/functions/{ref}"' in listed and "Your role: member" in listed
    shown = sessions["bob"].page(f"/ui/functions/{ref}")
    assert f'action="/ui/functions/{ref}/invoke"' in shown
    invoked = sessions["bob"].submit(f"/ui/functions/{ref}/invoke", {WHOLE: '{"x": 7}'})
    assert invoked.status_code == 303, invoked.text
    where = invoked.headers["location"]
    assert where.startswith(f"/ui/functions/{ref}/invocations/")
    assert sessions["bob"].page(where)
    with sessions["bob"].http.stream("GET", f"{where}/events") as events:
        assert events.status_code == 200
        lines = events.iter_lines()
        assert next(line for line in lines if line.startswith("event: ")) == "event: result"
        assert next(lines) == 'data: {"x": 7}'
    key = where.rsplit("/", 1)[1]
    assert [i["id"] for i in bob.get(f"{FUNCTIONS}/{ref}/invocations").json()] == [key]


def test_a_viewer_sees_it_without_the_form_and_a_forged_invoke_is_refused(
    project: str, sessions: dict[str, Browserless], vic: httpx.Client
) -> None:
    ref = f"{project}~echo"
    listed = sessions["vic"].page("/ui/functions")
    assert f'href="/ui/functions/{ref}"' in listed and "Your role: viewer" in listed
    shown = sessions["vic"].page(f"/ui/functions/{ref}")
    assert "/invoke" not in shown and "a member or an owner invokes it" in shown
    refused = sessions["vic"].submit(f"/ui/functions/{ref}/invoke", {WHOLE: '{"x": 1}'})
    assert refused.status_code == 403, refused.text
    assert "/invoke" not in refused.text
    assert vic.get(f"{FUNCTIONS}/{ref}/invocations").json() == []  # nothing ran


def test_a_non_member_sees_no_projects_function_and_a_forged_invoke_is_not_found(
    project: str, sessions: dict[str, Browserless], carol: httpx.Client
) -> None:
    ref = f"{project}~echo"
    listed = sessions["carol"].page("/ui/functions")
    assert project not in listed
    sessions["carol"].page(f"/ui/functions/{ref}", status=404)
    assert (
        sessions["carol"].submit(f"/ui/functions/{ref}/invoke", {WHOLE: '{"x": 1}'}).status_code
        == 404
    )
    assert carol.get(f"{FUNCTIONS}/{ref}/invocations").status_code == 404


def test_the_services_page_shows_a_projects_service_by_role(
    project: str, sessions: dict[str, Browserless], alice: httpx.Client
) -> None:
    ref = f"{project}~web"
    for user in ("alice", "bob", "vic"):
        assert f'href="/ui/services/{ref}"' in sessions[user].page("/ui/services"), user
    assert project not in sessions["carol"].page("/ui/services")
    owner, member, viewer = (
        sessions[u].page(f"/ui/services/{ref}") for u in ("alice", "bob", "vic")
    )
    stop = f'action="/ui/services/{ref}/stop"'
    opened = f'href="/ui/open/{ref}/"'
    assert opened in owner and stop in owner
    assert opened in member and stop not in member  # alice's, and bob no owner
    assert opened not in viewer and stop not in viewer and "/chat" not in viewer
    assert sessions["vic"].submit(f"/ui/services/{ref}/stop").status_code == 403
    sessions["vic"].page(f"/ui/open/{ref}/", status=403)
    sessions["carol"].page(f"/ui/services/{ref}", status=404)
    assert sessions["carol"].submit(f"/ui/services/{ref}/stop").status_code == 404
    assert alice.get(f"{SERVICES}/{ref}").json()["stopping"] is False  # nothing changed


@pytest.mark.parametrize("tilde", ["~", "%7E", "%7e"])
def test_a_member_opens_a_projects_service_at_the_path_asked(
    project: str, sessions: dict[str, Browserless], tilde: str
) -> None:
    """The replica gets the path after ``/ui/open/PROJECT~NAME`` however the browser
    encoded the ``~`` (it may send ``%7E``); the first request starts the replica."""
    body = sessions["bob"].page(f"/ui/open/{project}{tilde}web/path/here?x=1")
    assert body == "/path/here?x=1"


def test_a_member_starts_a_service_in_the_project_from_the_form_and_stops_it(
    project: str, sessions: dict[str, Browserless], alice: httpx.Client
) -> None:
    name = f"s{uuid.uuid4().hex[:8]}"
    assert f'<option value="{project}">' in sessions["bob"].page("/ui/services")
    assert f'<option value="{project}">' not in sessions["vic"].page("/ui/services")
    form = {"name": name, "system": "local", "script": backend_script(), "project": project}
    form |= {"min_replicas": "0", "max_replicas": "1"}
    assert sessions["vic"].submit("/ui/services", form).status_code == 403
    started = sessions["bob"].submit("/ui/services", form)
    assert started.status_code == 303, started.text
    assert started.headers["location"] == f"/ui/services/{project}~{name}"
    assert alice.get(f"{SERVICES}/{project}~{name}").json()["owner"] == "bob"
    shown = sessions["bob"].page(f"/ui/services/{project}~{name}")
    assert f'action="/ui/services/{project}~{name}/stop"' in shown  # bob made it
    assert sessions["bob"].submit(f"/ui/services/{project}~{name}/stop").status_code == 303
    gone = alice.get(f"{SERVICES}/{project}~{name}")
    assert gone.status_code == 404 or gone.json()["stopping"] is True


def test_the_pages_with_a_projects_sections_pass_axe(
    project: str, ui: UiUser, alice: httpx.Client
) -> None:
    member = f"{PROJECTS}/{project}/members/{ui.name}"
    assert alice.put(member, json={"role": "viewer"}).is_success
    try:
        with_axe(ui.context)
        pages = {
            "services": "/ui/services",
            "project service": f"/ui/services/{project}~web",
            "functions": "/ui/functions",
            "project function": f"/ui/functions/{project}~echo",
        }
        assert scanned(ui.page, ui.base, pages) == {}
    finally:
        assert alice.delete(member).status_code == 204
