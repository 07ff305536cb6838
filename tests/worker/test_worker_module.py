"""The worker is one module of the standard library only, for the Python of any cluster
(3.9 on): nothing is installed there, the gateway embeds its text in the job script."""

from __future__ import annotations

import ast
import base64
import json
import os
import subprocess
import sys
from importlib import resources
from pathlib import Path

import httpx

from tests.support.gateway_process import free_port
from tests.worker.support import WorkerProcess, invoke

TEXT = resources.files("hpcgate").joinpath("worker.py").read_text()


def imported_names(tree: ast.Module) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, "a relative import"
            names.add((node.module or "").split(".")[0])
    return names


def test_it_imports_the_standard_library_only() -> None:
    names = imported_names(ast.parse(TEXT))
    assert "asyncio" in names  # the walk finds them
    assert names <= sys.stdlib_module_names, names - sys.stdlib_module_names


def test_its_syntax_is_python_3_9s() -> None:
    ast.parse(TEXT, feature_version=(3, 9))


def test_python_m_hpcgate_worker_takes_the_spec_from_the_environment(tmp_path: Path) -> None:
    spec = {"name": "f", "source": "def f(x):\n    return [x]\n", "concurrency": "async"}
    port = free_port()
    env = {
        **os.environ,
        "HPCGATE_FUNCTION_SPEC": base64.b64encode(json.dumps(spec).encode()).decode(),
        "HPCGATE_SERVICE_PORT": str(port),
        "HPCGATE_SERVICE_HOST": "127.0.0.1",
    }
    log = tmp_path / "err"
    with log.open("wb") as err:
        process = subprocess.Popen([sys.executable, "-m", "hpcgate.worker"], env=env, stderr=err)
    worker = WorkerProcess(process, port, log)
    try:
        worker.wait_ready()
        with httpx.Client(base_url=worker.url) as client:
            assert invoke(client, "m1", x="y") == [{"seq": 1, "type": "result", "data": ["y"]}]
    finally:
        process.terminate()
        assert process.wait(10) == 0
    assert "stopped" in log.read_text()


def test_a_bad_spec_stops_it_with_a_message(tmp_path: Path) -> None:
    spec = {"name": "f", "source": "x = 1", "entry": "m:f"}
    env = {
        **os.environ,
        "HPCGATE_FUNCTION_SPEC": base64.b64encode(json.dumps(spec).encode()).decode(),
        "HPCGATE_SERVICE_PORT": str(free_port()),
    }
    done = subprocess.run(
        [sys.executable, "-m", "hpcgate.worker"], env=env, capture_output=True, timeout=30
    )
    assert done.returncode == 2
    assert b"exactly one of source and entry" in done.stderr
