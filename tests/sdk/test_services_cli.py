"""``hpcgate services`` and ``hpcgate usage``, run as real processes against a real gateway
whose services run the test backend as real jobs on the embedded scheduler."""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from hpcgate.client import Client
from tests.sdk.test_cli import hpcgate, one_line_error, together
from tests.support.gateway_process import GatewayProcess
from tests.support.services import backend_script


@pytest.fixture
def env(
    services_gw: GatewayProcess, services_tokens: dict[str, str], tmp_path: Path
) -> dict[str, str]:
    """A CI job's environment for alice: URL and token set, no profile saved."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("HPCGATE_")}
    return {
        **clean,
        "HPCGATE_URL": services_gw.url,
        "HPCGATE_TOKEN": services_tokens["alice"],
        "HPCGATE_CONFIG_DIR": str(tmp_path / "config"),
    }


@pytest.fixture
def script(tmp_path: Path) -> Path:
    path = tmp_path / "server.sh"
    path.write_text(backend_script())
    return path


@pytest.fixture
def hpc(services_gw: GatewayProcess, services_tokens: dict[str, str]) -> Iterator[Client]:
    with Client(services_gw.url, services_tokens["alice"]) as client:
        yield client


def test_start_show_scale_logs_and_stop(env: dict[str, str], hpc: Client) -> None:
    name = f"c{uuid.uuid4().hex[:8]}"
    start = ("services", "start", name, "-", "--min", "1", "--wait", "--json", "--timeout", "60")
    started = hpcgate(env, *start, stdin=backend_script())  # the script from stdin
    assert started.returncode == 0, started.stderr
    service = json.loads(started.stdout)
    assert service["name"] == name and service["owner"] == "alice"
    [replica] = [r for r in service["replicas"] if r["state"] == "ready"]
    listed, shown, logged, events = together(
        lambda: hpcgate(env, "services", "ls"),
        lambda: hpcgate(env, "services", "show", name),
        lambda: hpcgate(env, "services", "logs", name, "--limit", "1"),
        lambda: hpcgate(env, "services", "events", name, "--limit", "1", "--json"),
    )
    assert listed.returncode == 0, listed.stderr
    header, *rows = listed.stdout.splitlines()
    assert header.split() == ["NAME", "OWNER", "SYSTEM", "MIN", "MAX", "READY", "LIVE", "MODELS"]
    assert [name, "alice", "local", "1", "1", "1", "1", "-"] in [row.split() for row in rows]
    assert ["echo", "(declared)", "local", "1", "1"] in [row.split()[:5] for row in rows]
    assert shown.returncode == 0, shown.stderr
    assert f" {replica['job_id']} " in shown.stdout and " ready " in shown.stdout
    assert logged.returncode == 0, logged.stderr
    assert logged.stdout.startswith(f"[{replica['id']}] backend pid "), logged.stdout
    assert events.returncode == 0, events.stderr
    event = json.loads(events.stdout)
    assert (event["kind"], event["replica"]) == ("stderr", replica["id"])

    scaled = hpcgate(env, "services", "scale", name, "--max", "2")
    assert scaled.returncode == 0, scaled.stderr
    assert "; min 1, max 2" in scaled.stdout
    stopped = hpcgate(env, "services", "stop", name)
    assert (stopped.returncode, stopped.stdout.split(":")[0]) == (0, f"service {name}")
    assert all(s.stopping for s in hpc.services.list() if s.name == name)  # or already gone


def test_bad_input_is_one_clear_line_and_changes_nothing(
    env: dict[str, str], script: Path, hpc: Client
) -> None:
    name = f"c{uuid.uuid4().hex[:8]}"
    hpc.services.create(name, "local", backend_script(), max_replicas=2)
    try:
        unknown, bad_scale, bad_start, no_script, bad_time, no_min = together(
            lambda: hpcgate(env, "services", "show", "nope"),
            lambda: hpcgate(env, "services", "scale", name, "--min", "3", "--max", "2"),
            lambda: hpcgate(
                env, "services", "start", "x" + name, str(script), "--min", "3", "--max", "2"
            ),
            lambda: hpcgate(env, "services", "start", "y" + name),
            lambda: hpcgate(env, "usage", "--since", "yesterday"),
            lambda: hpcgate(env, "services", "start", "z" + name, str(script), "--wait"),
        )
        assert one_line_error(unknown, 3) == "error: Not found: no service 'nope'"
        line = one_line_error(bad_scale, 2)
        assert "min_replicas (3) must not exceed max_replicas (2)" in line
        assert "min_replicas must not exceed max_replicas" in one_line_error(bad_start, 2)
        assert "FILE or --script-path" in one_line_error(no_script, 2)
        assert "'yesterday' is not an ISO 8601 time" in one_line_error(bad_time, 2)
        assert "--wait needs --min 1" in one_line_error(no_min, 2)
        assert hpc.services.get(name).spec.max_replicas == 2
        made = {s.name for s in hpc.services.list()}
        assert made.isdisjoint({"x" + name, "y" + name, "z" + name})
    finally:
        hpc.services.delete(name)


def test_usage_as_a_table_and_as_json(
    env: dict[str, str], services_gw: GatewayProcess, hpc: Client
) -> None:
    hpc.services.wait("echo", timeout=60)
    completion = {"model": "echo-model", "prompt": "hi", "stream": True}
    answer = httpx.post(
        f"{services_gw.url}/v1/completions",
        json=completion,
        headers={"Authorization": f"Bearer {hpc.token}"},
        timeout=60,
    )
    assert answer.status_code == 200, answer.text
    for _ in range(100):  # usage is stored behind the answers
        if hpc.usage(model="echo-model"):
            break
        time.sleep(0.1)
    table, as_json = together(
        lambda: hpcgate(env, "usage", "--model", "echo-model"),
        lambda: hpcgate(env, "usage", "--model", "echo-model", "--json"),
    )
    assert table.returncode == 0, table.stderr
    header, *rows = table.stdout.splitlines()
    assert header.split() == [
        "USER",
        "SERVICE",
        "OWNER",
        "MODEL",
        "REQUESTS",
        "PROMPT",
        "COMPLETION",
    ]
    assert rows and all(
        row.split()[:4] == ["alice", "echo", "(declared)", "echo-model"] for row in rows
    )
    assert as_json.returncode == 0, as_json.stderr
    assert sum(row["requests"] for row in json.loads(as_json.stdout)) >= 1
