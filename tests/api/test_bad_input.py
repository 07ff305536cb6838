"""Bad requests get a clear 4xx problem+json and change nothing."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.accounts import passable
from tests.support.gateway_process import GatewayProcess
from tests.support.jobs import ended, submit, wait_for_job

JOBS = "/api/v1/systems/local/jobs"
OK_SCRIPT = "#!/bin/bash\necho hi"


def _problem(response: httpx.Response, status: int, slug: str | None = None) -> dict[str, object]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body = dict(response.json())
    if slug is not None:
        assert str(body["type"]).endswith("/" + slug)
    return body


@pytest.fixture
def count(gateway_user: httpx.Client) -> object:
    def jobs() -> int:
        return len(gateway_user.get(JOBS, params={"limit": 1000}).json()["items"])

    return jobs


BAD_BODIES = [
    pytest.param(b"{not json", "validation-error", id="invalid-json"),
    pytest.param(b'{"script": "#!/bin/bash", "colour": "red"}', "validation-error", id="unknown"),
    pytest.param(b'{"script": 42}', "validation-error", id="wrong-type"),
    pytest.param(b'{"name": "x"}', "validation-error", id="no-script"),
    pytest.param(b'{"script": "#!/bin/sh", "script_path": "/x"}', "validation-error", id="both"),
    pytest.param(b'{"script": "#!/bin/sh", "time_limit": "soon"}', "validation-error", id="time"),
    pytest.param(b'{"script": "#!/bin/sh", "nodes": 0}', "validation-error", id="nodes-0"),
    pytest.param(
        b'{"script": "#!/bin/sh", "time_limit": 9223372036854775808}',
        "validation-error",
        id="time-limit-2^63",
    ),
    pytest.param(
        b'{"script": "#!/bin/sh", "time_limit": "99999999999999999999"}',
        "validation-error",
        id="time-limit-text",
    ),
    pytest.param(
        b'{"script": "#!/bin/sh\\n#SBATCH -t 99999999999999999999\\necho"}',
        "scheduler-rejected",
        id="time-limit-directive",
    ),
    pytest.param(
        b'{"script": "#!/bin/sh", "environment": {"A B": "x"}}', "validation-error", id="env-name"
    ),
    pytest.param(
        b'{"script": "#!/bin/sh", "dependencies": ["afterok:1;rm"]}',
        "validation-error",
        id="dependency",
    ),
    pytest.param(
        b'{"script": "#!/bin/sh", "partition": "debug; rm -rf /"}',
        "validation-error",
        id="shell-metachar",
    ),
    pytest.param(
        b'{"script": "#!/bin/sh", "partition": "debug"}',
        "unsupported-field",
        id="unsupported-partition",
    ),
    pytest.param(
        b'{"script": "#!/bin/sh", "gpus": 1, "memory": "1G"}',
        "unsupported-field",
        id="unsupported-gpus",
    ),
    pytest.param(b'{"script": "echo no shebang"}', "scheduler-rejected", id="no-shebang"),
    pytest.param(
        b'{"script": "#!/bin/sh", "working_directory": "/does/not/exist"}',
        "scheduler-rejected",
        id="no-workdir",
    ),
    pytest.param(
        b'{"script": "#!/bin/sh", "dependencies": ["afterok:999999"]}',
        "scheduler-rejected",
        id="unknown-dependency",
    ),
]


@pytest.mark.parametrize(("body", "slug"), BAD_BODIES)
def test_bad_submit_is_422_and_creates_nothing(
    gateway_user: httpx.Client, count: object, body: bytes, slug: str
) -> None:
    response = gateway_user.post(JOBS, content=body, headers={"content-type": "application/json"})
    problem = _problem(response, 422, slug)
    assert problem["detail"]
    assert count() == 0  # type: ignore[operator]


def test_unsupported_field_names_the_fields(gateway_user: httpx.Client) -> None:
    body = {"script": OK_SCRIPT, "gpus": 1, "account": "proj"}
    problem = _problem(gateway_user.post(JOBS, json=body), 422, "unsupported-field")
    assert problem["fields"] == ["account", "gpus"]


def test_validation_problem_lists_field_errors(gateway_user: httpx.Client) -> None:
    problem = _problem(gateway_user.post(JOBS, json={"script": OK_SCRIPT, "ntasks": "many"}), 422)
    errors = problem["errors"]
    assert isinstance(errors, list) and errors[0]["loc"] == ["body", "ntasks"]


def test_oversized_script_is_413(gateway_user: httpx.Client, count: object) -> None:
    script = "#!/bin/bash\n" + "#" * 5000  # the test gateway allows 4096 bytes
    _problem(gateway_user.post(JOBS, json={"script": script}), 413, "payload-too-large")
    assert count() == 0  # type: ignore[operator]


def test_oversized_body_is_413_before_parsing(gateway_user: httpx.Client) -> None:
    body = b'{"script": "' + b"x" * (5 << 20) + b'"}'
    response = gateway_user.post(JOBS, content=body, headers={"content-type": "application/json"})
    _problem(response, 413)


def test_unknown_system_job_and_route_are_404(gateway_user: httpx.Client) -> None:
    _problem(gateway_user.get("/api/v1/systems/mars/jobs"), 404, "not-found")
    _problem(gateway_user.post("/api/v1/systems/mars/jobs", json={"script": OK_SCRIPT}), 404)
    _problem(gateway_user.get(f"{JOBS}/424242"), 404, "not-found")
    _problem(gateway_user.delete(f"{JOBS}/424242"), 404)
    _problem(gateway_user.get("/api/v1/nothing-here"), 404)


def test_malformed_job_id_and_query_are_422(gateway_user: httpx.Client) -> None:
    _problem(gateway_user.get(f"{JOBS}/..%2F..%2Fetc"), 404)  # no such route
    _problem(gateway_user.get(f"{JOBS}/a*b"), 422)
    _problem(gateway_user.get(f"{JOBS}/$(reboot)"), 422)
    _problem(gateway_user.get(JOBS, params={"state": "SLEEPING"}), 422)
    _problem(gateway_user.get(JOBS, params={"limit": 0}), 422)
    for cursor in ("abc", "", "\u00b2", "9" * 32):  # the document's pattern: 1-10 ASCII digits
        _problem(gateway_user.get(JOBS, params={"cursor": cursor}), 422)
    _problem(gateway_user.get(f"{JOBS}/1/output", params={"stream": "stdin"}), 422)


def test_wrong_method_is_405_problem(gateway_user: httpx.Client) -> None:
    _problem(gateway_user.put(JOBS, json={}), 405)


def test_shell_metacharacters_in_fields_are_inert(gateway_user: httpx.Client) -> None:
    """Strings that would do harm in a shell reach the job as plain data."""
    marker = f"/tmp/hpcgate-pwned-{uuid.uuid4().hex[:8]}"
    evil = f"$(touch {marker}); `touch {marker}`; touch {marker}"
    job = submit(
        gateway_user,
        script="#!/bin/bash\nprintf '%s' \"$EVIL\"",
        name=evil,
        environment={"EVIL": evil},
    )
    done = wait_for_job(gateway_user, job["id"], ended)
    assert done["state"] == "COMPLETED" and done["name"] == evil
    assert gateway_user.get(f"{JOBS}/{job['id']}/output").text == evil
    assert not os.path.exists(marker)


def test_another_users_job_is_a_dependency_that_does_not_exist(
    gateway_user: httpx.Client, bob: httpx.Client, count: object
) -> None:
    theirs = submit(bob, script="#!/bin/bash\nexit 3")["id"]
    missing = str(int(theirs) + 10_000)
    details = []
    for job_id in (theirs, missing):
        body = {"script": OK_SCRIPT, "dependencies": [f"afterok:{job_id}"]}
        problem = _problem(gateway_user.post(JOBS, json=body), 422, "scheduler-rejected")
        details.append(str(problem["detail"]).replace(job_id, "N"))
    assert details[0] == details[1]
    assert count() == 0  # type: ignore[operator]
    mine = submit(gateway_user, script=OK_SCRIPT)["id"]
    assert submit(gateway_user, script=OK_SCRIPT, dependencies=[f"afterany:{mine}"])["id"]


def test_a_script_file_s_dependency_directive_is_refused_as_an_inline_one_is(
    gateway_user: httpx.Client, bob: httpx.Client, count: object, tmp_path: Path
) -> None:
    """A script given by ``script_path`` is read and checked as the inline one: another
    user's job in its directive is refused exactly as a job that does not exist."""
    theirs = submit(bob, script="#!/bin/bash\nexit 3")["id"]
    details = []
    for job_id in (theirs, str(int(theirs) + 10_000)):
        text = f"#!/bin/bash\n#SBATCH --dependency=afterok:{job_id}\ntrue\n"
        script = tmp_path / f"after-{job_id}.sh"
        script.write_text(text)
        passable(script)  # as root, the user's account reads it
        for body in ({"script_path": str(script)}, {"script": text}):
            problem = _problem(gateway_user.post(JOBS, json=body), 422, "scheduler-rejected")
            details.append(str(problem["detail"]))
    assert len(set(details)) == 1, details
    assert count() == 0  # type: ignore[operator]


def test_a_chunked_body_over_the_limit_is_413(gateway_user: httpx.Client) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"script": "'
        for _ in range(5):
            yield b"x" * (1 << 20)  # the gateway takes 4 MiB
        yield b'"}'

    json_type = {"content-type": "application/json"}
    response = gateway_user.post(JOBS, content=chunks(), headers=json_type)
    assert "content-length" not in response.request.headers
    _problem(response, 413, "payload-too-large")


def test_a_method_a_route_lacks_is_405_with_allow(gateway_user: httpx.Client) -> None:
    response = gateway_user.put("/api/v1/tokens", json={})
    _problem(response, 405, "method-not-allowed")
    allowed = set(response.headers["allow"].replace(" ", "").split(","))
    assert {"GET", "POST"} <= allowed and "PUT" not in allowed


@pytest.mark.parametrize(
    "headers",
    [{}, {"Content-Type": "application/x-www-form-urlencoded"}, {"Content-Type": "text/plain"}],
    ids=["none", "form (curl -d)", "text"],
)
def test_a_json_body_without_its_content_type_is_answered_with_a_hint(
    gateway_user: httpx.Client, count: Callable[[], int], headers: dict[str, str]
) -> None:
    before = count()
    body = b'{"script": "#!/bin/bash\\necho hi"}'
    answer = gateway_user.post(JOBS, content=body, headers=headers)
    detail = str(_problem(answer, 422, "validation-error")["detail"])
    assert "Content-Type: application/json" in detail, detail
    assert count() == before


def _integers(schema: object, where: str) -> Iterator[tuple[str, dict[str, object]]]:
    """Every integer schema inside ``schema`` (through properties, items, anyOf...)."""
    if isinstance(schema, dict):
        if schema.get("type") == "integer":
            yield where, schema
        for key, value in schema.items():
            yield from _integers(value, f"{where}.{key}")
    elif isinstance(schema, list):
        for index, value in enumerate(schema):
            yield from _integers(value, f"{where}[{index}]")


# Numbers only the gateway writes and never reads: a problem's status code and where in a
# request an error is (the problem documents, FastAPI's validation error).
NOT_INPUT = (
    "components.schemas.Problem.properties.status",
    "components.schemas.FieldError.",
    "components.schemas.ValidationError.",
)


def test_every_integer_in_the_api_has_bounds(gateway: GatewayProcess) -> None:
    """Every integer the API takes or gives (parameters, bodies, responses) has a minimum
    and a maximum in the OpenAPI document, so no value reaches storage or the OS unbounded."""
    document = httpx.get(f"{gateway.url}/openapi.json").json()
    found = list(_integers(document, ""))
    assert len(found) > 30  # the walk reaches parameters, bodies and responses
    unbounded = [
        where.lstrip(".")
        for where, schema in found
        if not where.lstrip(".").startswith(NOT_INPUT)
        and not ({"maximum", "exclusiveMaximum"} & set(schema))
    ]
    assert unbounded == []
    exempt = [where for where, _ in found if where.lstrip(".").startswith(NOT_INPUT)]
    assert len(exempt) <= 3, exempt  # no more than those few


FILES = "/api/v1/systems/local/files"
BIG = str(2**63)  # one past what a BIGINT or an off_t holds


@pytest.fixture
def folder(gateway_user: httpx.Client) -> Iterator[str]:
    """An empty directory of the test's own in the caller's home."""
    path = f"hpcgate-bounds-{uuid.uuid4().hex[:10]}"
    assert gateway_user.post(f"{FILES}/mkdir", json={"path": path}).status_code == 201
    yield path
    gateway_user.request("DELETE", f"{FILES}/rm", params={"path": path, "recursive": True})


def _listing(client: httpx.Client, path: str) -> list[str]:
    found = client.get(f"{FILES}/ls", params={"path": path, "hidden": True})
    assert found.status_code == 200, found.text
    return [entry["name"] for entry in found.json()["entries"]]


def test_numbers_too_large_for_files_are_422_and_leave_nothing(
    gateway_user: httpx.Client, folder: str
) -> None:
    target = f"{folder}/big.bin"
    _problem(gateway_user.post(f"{FILES}/uploads", json={"path": target, "size": 2**63}), 422)
    assert _listing(gateway_user, folder) == []  # no hidden temporary file either
    for owner in ("owner", "group"):
        body = {"path": folder, owner: "1" + "0" * 20}
        _problem(gateway_user.put(f"{FILES}/chown", json=body), 422)
    gateway_user.put(f"{FILES}/upload", params={"path": target}, content=b"data")
    _problem(gateway_user.get(f"{FILES}/view", params={"path": target, "offset": BIG}), 422)
    begun = gateway_user.post(f"{FILES}/uploads", json={"path": f"{folder}/c.bin", "size": 4})
    chunk = f"{FILES}/uploads/{begun.json()['id']}"
    _problem(gateway_user.put(chunk, params={"offset": BIG}, content=b"data"), 422)
    assert gateway_user.get(chunk).json()["offset"] == 0


def test_numbers_too_large_for_jobs_are_4xx(gateway_user: httpx.Client) -> None:
    job = submit(gateway_user, script=OK_SCRIPT)
    wait_for_job(gateway_user, job["id"], ended)
    events = f"{JOBS}/{job['id']}/events"
    _problem(gateway_user.get(events, params={"after": BIG}), 422)
    _problem(gateway_user.get(events, headers={"Last-Event-ID": BIG}), 422)
    _problem(gateway_user.get(f"{JOBS}/{job['id']}/output", params={"offset": BIG}), 422)
    for cursor in (str(2**31 - 1), str(2**31), "9" * 10):  # past every job: from the newest
        listed = gateway_user.get(JOBS, params={"cursor": cursor})
        assert listed.status_code == 200 and job["id"] in [j["id"] for j in listed.json()["items"]]
    replay = gateway_user.get(events, headers={"Last-Event-ID": str(2**31 - 1)})
    assert replay.status_code == 200 and "event: state" not in replay.text


def test_a_token_lifetime_too_long_is_422_and_creates_nothing(gateway_user: httpx.Client) -> None:
    before = gateway_user.get("/api/v1/tokens").json()
    _problem(gateway_user.post("/api/v1/tokens", json={"expires_in": 10**20}), 422)
    assert gateway_user.get("/api/v1/tokens").json() == before


def test_true_and_false_are_not_numbers(
    gateway_user: httpx.Client, count: Callable[[], int]
) -> None:
    """Found by the fuzzer: pydantic's lax mode read ``"expires_in": true`` as one second."""
    before = count()
    for field in ("time_limit", "memory", "nodes", "ntasks", "cpus_per_task", "gpus"):
        body = {"script": OK_SCRIPT, field: True}
        _problem(gateway_user.post(JOBS, json=body), 422, "validation-error")
    assert count() == before
    _problem(gateway_user.post("/api/v1/tokens", json={"expires_in": True}), 422)
    upload = {"path": "never.bin", "size": True}
    _problem(gateway_user.post("/api/v1/systems/local/files/uploads", json=upload), 422)
