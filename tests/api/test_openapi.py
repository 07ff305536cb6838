"""The OpenAPI document describes every route, model and error response."""

from __future__ import annotations

import re

import httpx

from tests.support.gateway_process import GatewayProcess


def test_openapi_describes_every_route_with_its_problems(gateway: GatewayProcess) -> None:
    spec = httpx.get(f"{gateway.url}/openapi.json").json()
    paths = spec["paths"]
    jobs = "/api/v1/systems/{system}/jobs"
    for path in (
        jobs,
        jobs + "/{job_id}",
        jobs + "/{job_id}/output",
        jobs + "/{job_id}/events",
        "/api/v1/systems",
        "/api/v1/tokens",
    ):
        assert path in paths
    for path, methods in paths.items():
        for method, operation in methods.items():
            assert operation.get("summary"), f"{method} {path} has no summary"
            public = ("/api/v1/health", "/api/v1/auth/providers")  # no token: none to send
            if path.startswith("/api/v1/") and path not in public:
                assert "401" in operation["responses"], f"{method} {path} lacks 401"
                problem = operation["responses"]["401"]["content"]
                assert "application/problem+json" in problem
    submit = paths[jobs]["post"]
    assert {"201", "409", "413", "422", "503"} <= set(submit["responses"])
    spec_fields = spec["components"]["schemas"]["JobSpec"]["properties"]
    for field in (
        "script",
        "script_path",
        "name",
        "working_directory",
        "environment",
        "time_limit",
        "partition",
        "account",
        "nodes",
        "ntasks",
        "cpus_per_task",
        "memory",
        "gpus",
        "stdout",
        "stderr",
        "array",
        "dependencies",
    ):
        assert field in spec_fields


def test_docs_page_is_served_with_its_own_assets(gateway: GatewayProcess) -> None:
    """/docs works offline: every asset it references is served by the gateway itself."""
    response = httpx.get(f"{gateway.url}/docs")
    assert response.status_code == 200 and "swagger" in response.text.lower()
    referenced = re.findall(r"""(?:src|href|url)\s*[=:]\s*['"]([^'"]+)['"]""", response.text)
    assert referenced and all(ref.startswith("/") for ref in referenced), referenced
    assert "http://" not in response.text and "https://" not in response.text
    for ref in referenced:
        asset = httpx.get(f"{gateway.url}{ref}")
        assert asset.status_code == 200 and asset.content, ref
    script = httpx.get(f"{gateway.url}/docs/assets/swagger-ui-bundle.js")
    assert "SwaggerUIBundle" in script.text


def test_the_root_is_a_landing_page_linking_to_the_docs(gateway: GatewayProcess) -> None:
    response = httpx.get(f"{gateway.url}/")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert 'href="/docs"' in response.text and 'href="/openapi.json"' in response.text


def test_path_parameters_are_listed_in_the_order_of_the_path(gateway: GatewayProcess) -> None:
    """Generated clients take path parameters positionally: ``{system}`` before ``{job_id}``
    and ``{upload_id}``, as the path reads, though ``{system}`` comes from a dependency."""
    spec = httpx.get(f"{gateway.url}/openapi.json").json()
    checked = 0
    for path, methods in spec["paths"].items():
        expected = [part[1:-1] for part in path.split("/") if part.startswith("{")]
        for method, operation in methods.items():
            params = operation.get("parameters", [])
            in_path = [p["name"] for p in params if p["in"] == "path"]
            assert in_path == expected, f"{method} {path}: {in_path}"
            kinds = [p["in"] for p in params]
            assert kinds[: len(expected)] == ["path"] * len(expected), f"{method} {path}"
            checked += len(expected) > 1
    assert checked >= 7  # four job routes and three upload routes have two
