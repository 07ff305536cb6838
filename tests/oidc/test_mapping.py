"""Identity mapping rules and service accounts, with real tokens of the real provider whose
directory puts the claims (email, groups) into them."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from pydantic import ValidationError

from hpcgate.config import OidcIssuer
from tests.oidc.conftest import oidc_config
from tests.support.gateway_process import GatewayProcess, new_gateway
from tests.support.idp import IdP
from tests.support.jobs import ended, hidden_from, submit, wait_for_job

JOBS = "/api/v1/systems/local/jobs"
ID = "#!/bin/bash\nid -un\n"
RULES = r"""scopes = ["jobs:read", "jobs:write", "files:read", "files:write", "admin"]

[[auth.oidc.test.users]]
claim = "email"
equals = "alice@uni.example"
user = "alice"

[[auth.oidc.test.users]]
claim = "email"
match = '^([a-z]+)\.guest@partner\.example$'
user = "guest-{1}"
account = "bob"

[[auth.oidc.test.groups]]
value = "hpc-admins"
scopes = ["admin"]
projects = ["climate"]

[[auth.oidc.test.groups]]
value = "ocean-readers"
projects = ["ocean"]
role = "viewer"
"""


@pytest.fixture(scope="module")
def mapped(idp: IdP, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    server = new_gateway(tmp_path_factory.mktemp("mapped"), oidc_config(idp.issuer) + RULES)
    try:
        server.start()
        yield server
    finally:
        server.stop()


def _device(idp: IdP, sub: str, claims: dict[str, Any], scope: str = "jobs:read jobs:write") -> str:
    idp.set_claims(sub, claims)
    return idp.device_flow(sub, f"openid {scope}")


def test_a_claim_value_map_lands_on_the_user(idp: IdP, mapped: GatewayProcess) -> None:
    token = _device(idp, "u-4711", {"email": "alice@uni.example"})
    with mapped.client(token) as federated, mapped.client(mapped.token("alice")) as alice:
        job = submit(federated, script=ID)
        assert job["owner"] == "alice"
        assert job["id"] in {j["id"] for j in alice.get(JOBS).json()["items"]}


def test_a_regular_expression_names_the_user_and_the_unix_account(
    idp: IdP, mapped: GatewayProcess
) -> None:
    token = _device(idp, "dave", {"email": "dave.guest@partner.example"})
    with mapped.client(token) as guest, mapped.client(mapped.token("bob")) as bob:
        job = submit(guest, script=ID)
        assert job["owner"] == "guest-dave"
        hidden_from(bob, JOBS, job["id"])  # the account is bob's, the jobs are guest-dave's
        done = wait_for_job(guest, job["id"], ended)
        output = guest.get(f"{JOBS}/{job['id']}/output").text
    assert done["state"] == "COMPLETED", done
    if os.geteuid() == 0:  # multi-user mode: the rule's account runs the job
        assert output == "bob\n"


def test_no_matching_rule_is_refused_not_defaulted(idp: IdP, mapped: GatewayProcess) -> None:
    # preferred_username 'erin' would be a fine user name: with rules, only rules name users
    token = _device(idp, "erin", {"email": "erin@elsewhere.example"})
    with mapped.client(token) as client:
        refused = client.get(JOBS)
    assert refused.status_code == 403, refused.text
    assert refused.headers["content-type"] == "application/problem+json"
    assert "no identity mapping rule" in refused.json()["detail"]


def test_a_group_grants_scopes_beyond_the_token_s(idp: IdP, mapped: GatewayProcess) -> None:
    member = _device(
        idp, "u-1", {"email": "alice@uni.example", "groups": ["hpc-admins"]}, "jobs:read"
    )
    plain = _device(idp, "u-2", {"email": "alice@uni.example", "groups": ["students"]}, "jobs:read")
    with mapped.client(member) as admin, mapped.client(plain) as student:
        assert admin.get("/metrics").status_code == 200  # admin, from the group
        assert student.get("/metrics").status_code == 403
        assert student.post(JOBS, json={"script": ID}).status_code == 403  # jobs:read only


def test_a_group_makes_a_project_viewer_without_a_stored_membership(
    idp: IdP, mapped: GatewayProcess
) -> None:
    """The provider's group alone gives the role: the viewer lists the project's jobs and
    reads them, cannot cancel them; without the group, the same user sees none of it."""
    admin_token = (mapped.home / "admin-token").read_text().strip()
    with mapped.client(admin_token) as admin:
        made = admin.post("/api/v1/projects", json={"name": "ocean", "owner": "alice"})
        assert made.status_code == 201, made.text
    claims = {"email": "erin.guest@partner.example", "groups": ["ocean-readers"]}
    reader = _device(idp, "erin", claims)
    outsider = _device(idp, "erin", claims | {"groups": []})
    with (
        mapped.client(mapped.token("alice")) as alice,
        mapped.client(reader) as viewer,
        mapped.client(outsider) as plain,
    ):
        job = submit(alice, script="#!/bin/bash\nsleep 120", project="ocean")
        assert viewer.get("/api/v1/projects/ocean").json()["my_role"] == "viewer"
        listed = viewer.get(JOBS, params={"project": "ocean"}).json()["items"]
        assert [j["id"] for j in listed] == [job["id"]]
        assert viewer.delete(f"{JOBS}/{job['id']}").status_code == 403
        hidden_from(plain, JOBS, job["id"])
        assert alice.delete(f"{JOBS}/{job['id']}").status_code == 202


def test_a_client_is_a_service_account_of_its_own(idp: IdP, mapped: GatewayProcess) -> None:
    """ci-pipeline may have jobs:read jobs:write files:read at the provider; its jobs are
    those of 'client:ci-pipeline', which no person's name can be."""
    token = idp.client_credentials("jobs:read jobs:write files:read")
    with mapped.client(token) as ci, mapped.client(mapped.token("ci-pipeline")) as namesake:
        job = submit(ci, script=ID)
        assert job["owner"] == "client:ci-pipeline"
        hidden_from(namesake, JOBS, job["id"])
        mkdir = {"path": "made-by-ci", "parents": True}
        denied = ci.post("/api/v1/systems/local/files/mkdir", json=mkdir)
    assert denied.status_code == 403, denied.text  # files:write: not its client's
    assert "files:write" in denied.json()["detail"]


def test_a_mapped_account_or_a_service_account_mints_no_hpcgate_token(
    idp: IdP, mapped: GatewayProcess
) -> None:
    """An hpcgate token could not carry the rule's account (it would run as another) nor
    the client's name (no user's): both are refused; a plain mapped user may."""
    guest = _device(idp, "dave", {"email": "dave.guest@partner.example"})
    plain = _device(idp, "u-4711", {"email": "alice@uni.example"})
    ci = idp.client_credentials("jobs:read")
    wanted = {"scopes": ["jobs:read"], "expires_in": 60}
    for token, status in ((guest, 403), (ci, 403), (plain, 201)):
        with mapped.client(token) as client:
            answer = client.post("/api/v1/tokens", json=wanted)
        assert answer.status_code == status, answer.text


def test_a_client_beyond_its_scopes_gets_no_token(idp: IdP) -> None:
    form = {"grant_type": "client_credentials", "scope": "admin"}
    answer = httpx.post(
        f"{idp.issuer}/token", data=form, auth=("ci-pipeline", "ci-pipeline-secret")
    )
    assert answer.status_code == 400 and answer.json()["error"] == "invalid_scope"


@pytest.mark.parametrize(
    ("rule", "complaint"),
    [
        ({"claim": "email", "match": "(unclosed"}, "not a regular expression"),
        ({"claim": "email", "match": "x" * 300}, "at most 256 characters"),
        ({"claim": "email", "equals": "a@b", "user": "{1}"}, "names group {1}"),
        ({"claim": "email", "match": "^(.+)@b$", "user": "{2}"}, "names group {2}"),
        ({"claim": "email", "equals": "a@b", "user": "Not A Name"}, "not an hpcgate user"),
        ({"claim": "email", "equals": "a@b", "user": "a", "account": "x:y"}, "Unix account"),
        ({"claim": "email", "user": "a"}, "exactly one of"),
        ({"claim": "email", "equals": "a", "match": "a", "user": "a"}, "exactly one of"),
    ],
)
def test_a_bad_rule_is_a_configuration_error(rule: dict[str, str], complaint: str) -> None:
    with pytest.raises(ValidationError, match=complaint.replace("{", r"\{").replace("}", r"\}")):
        OidcIssuer(issuer="https://idp.example", audience="hpcgate", users=[rule])


def test_a_group_cannot_grant_what_the_provider_may_not() -> None:
    group = {"value": "staff", "scopes": ["admin"]}
    with pytest.raises(ValidationError, match="do not list"):
        OidcIssuer(issuer="https://idp.example", audience="hpcgate", groups=[group])
