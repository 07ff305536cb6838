"""The OpenAPI document describes every route, model and error response."""

from __future__ import annotations

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
            if path.startswith("/api/v1/") and path != "/api/v1/health":
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


def test_docs_page_is_served(gateway: GatewayProcess) -> None:
    response = httpx.get(f"{gateway.url}/docs")
    assert response.status_code == 200 and "swagger" in response.text.lower()
