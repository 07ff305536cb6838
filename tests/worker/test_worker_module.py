"""The worker is one module of the standard library only, for the Python of any cluster
(3.9 on): nothing is installed there, the gateway embeds its text in the job script."""

from __future__ import annotations

import ast
import base64
import json
import os
import shutil
import subprocess
import sys
from importlib import resources
from pathlib import Path

import httpx
import pytest

from tests.support.gateway_process import free_port
from tests.worker.support import WorkerProcess, events, invoke, running_worker, spec_for

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
    """...and ``cryptography`` in :class:`Sealer` only, lazily: for encrypted invocations."""
    tree = ast.parse(TEXT)
    names = imported_names(tree)
    assert "asyncio" in names  # the walk finds them
    assert names - {"cryptography"} <= sys.stdlib_module_names, names - sys.stdlib_module_names
    sealer = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "Sealer")
    rest = ast.Module(body=[n for n in tree.body if n is not sealer], type_ignores=[])
    assert "cryptography" not in imported_names(rest)


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
            process.terminate()  # with the client's connection still open
            assert process.wait(10) == 0
    finally:
        process.kill()
    assert "stopped" in log.read_text()
    assert "Traceback" not in log.read_text()  # its connections closed, their tasks ended


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


def interpreter(minor: int) -> str | None:
    """A Python 3.<minor> here: on PATH (if it runs: pyenv's shims may not) or pyenv's."""
    pyenv = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
    names = [f"python3.{minor}", *map(str, sorted(pyenv.glob(f"3.{minor}.*/bin/python3")))]
    for name in filter(shutil.which, names):
        probe = [name, "-c", "import sys; print(sys.executable)"]
        found = subprocess.run(probe, capture_output=True, text=True, timeout=30, check=False)
        if found.returncode == 0:
            return found.stdout.strip()
    return None


PYTHONS = {f"3.{minor}": interpreter(minor) for minor in range(9, 14)}
EVERY_MODE = """
import asyncio, os

def gen(n):
    for i in range(n):
        yield i
    return "done"

async def agen(n):
    for i in range(n):
        await asyncio.sleep(0)
        yield i

def crash():
    yield 1
    os._exit(5)
"""


@pytest.mark.parametrize(
    "python",
    [
        pytest.param(path, id=version, marks=pytest.mark.skipif(not path, reason="not here"))
        for version, path in PYTHONS.items()
    ],
)
def test_it_runs_on_each_python_from_3_9(tmp_path: Path, python: str) -> None:
    """Every mode once on each Python on PATH (``HPCGATE_TEST_WORKER_PYTHON`` runs the whole
    tier on one)."""
    for mode, call, last in [
        ("threads", "gen", "done"),
        ("async", "agen", None),
        ("processes", "gen", "done"),
    ]:
        spec = spec_for(EVERY_MODE, call, concurrency=mode)
        with running_worker(tmp_path, spec, python=python) as run, run.client() as client:
            got = invoke(client, "v1", n=300)
            assert [event["seq"] for event in got] == list(range(1, 302))
            assert got[-1] == {"seq": 301, "type": "result", "data": last}
    spec = spec_for(EVERY_MODE, "crash", concurrency="processes")
    with running_worker(tmp_path, spec, python=python) as run, run.client() as client:
        client.post("/invocations", json={"id": "c1", "input": {}})
        assert events(client, "c1")[-1]["data"]["type"] == "WorkerCrashed"
