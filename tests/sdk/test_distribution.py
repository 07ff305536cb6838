"""The three distributions built from this tree, for real: the client's wheel, installed alone
into a fresh virtual environment, gives a working ``hpcgate`` command and SDK and brings
none of the server's stack; the agent's wheel with it gives ``hpcgate-agent`` and no more
of the server; the server's wheel ships everything else and no file twice.

The wheels are built by hatchling from the test environment (``--no-build-isolation``: no
download of the build backend); the fresh environment's dependencies (httpx, pydantic,
typer, rich, platformdirs) come from PyPI or pip's cache.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

import hpcgate

pytestmark = pytest.mark.distribution

ROOT = Path(__file__).resolve().parents[2]
SERVER_STACK = ("fastapi", "sqlalchemy", "asyncssh", "uvicorn", "alembic", "starlette")


def run(*argv: str | Path, env: dict[str, str] | None = None) -> str:
    """Run a command; its stdout. A failure shows its output."""
    done = subprocess.run(
        [str(arg) for arg in argv], capture_output=True, text=True, timeout=180, env=env
    )
    assert done.returncode == 0, f"{argv}\n{done.stdout}\n{done.stderr}"
    return done.stdout


def pip(*args: str | Path) -> str:
    return run(sys.executable, "-m", "pip", "--disable-pip-version-check", *args)


@pytest.fixture(scope="module")
def wheels(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The client's wheel, the agent's and the server's, built from this tree."""
    folder = tmp_path_factory.mktemp("wheels")
    trees = (ROOT / "client", ROOT / "agent", ROOT)
    pip("wheel", "-q", "--no-deps", "--no-build-isolation", "-w", folder, *trees)
    found = {path.name.split("-")[0]: path for path in folder.glob("*.whl")}
    assert set(found) == {"hpcgate", "hpcgate_client", "hpcgate_agent"}, found
    return found


@pytest.fixture(scope="module")
def venv(wheels: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtual environment with the client's wheel alone installed; its bin/."""
    where = tmp_path_factory.mktemp("client-only") / "venv"
    run(sys.executable, "-m", "venv", "--without-pip", where)
    pip("--python", where / "bin" / "python", "install", "-q", wheels["hpcgate_client"])
    return where / "bin"


@pytest.fixture(scope="module")
def agent_venv(wheels: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtual environment with the agent's wheel (and the client's it needs); its
    bin/."""
    where = tmp_path_factory.mktemp("agent-only") / "venv"
    run(sys.executable, "-m", "venv", "--without-pip", where)
    python = where / "bin" / "python"
    pip("--python", python, "install", "-q", wheels["hpcgate_client"], wheels["hpcgate_agent"])
    return where / "bin"


def names(wheel: Path) -> set[str]:
    """The package files of a wheel (not its metadata)."""
    with zipfile.ZipFile(wheel) as archive:
        return {name for name in archive.namelist() if ".dist-info/" not in name}


def sources() -> Iterator[str]:
    """The files of ``src/hpcgate`` as a wheel names them."""
    top = ROOT / "src"
    for path in (top / "hpcgate").rglob("*"):
        if path.is_file() and "__pycache__" not in path.parts:
            yield path.relative_to(top).as_posix()


def clean_env() -> dict[str, str]:
    """This environment minus what would let the fresh one see this tree's packages."""
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}


def test_the_client_alone_gives_the_command_and_the_sdk(venv: Path) -> None:
    env = clean_env()
    helped = run(venv / "hpcgate", "--help", env={**env, "COLUMNS": "100"})
    assert "Use a gateway (as a user)" in helped and "jobs" in helped
    commands = {line.strip("│ ").split(" ")[0] for line in helped.splitlines()}
    assert "jobs" in commands and "services" in commands
    assert "serve" not in commands  # the gateway's commands come with the server only
    assert "submit" in run(venv / "python", "-m", "hpcgate", "jobs", "--help", env=env)
    every = (
        "import importlib, pkgutil, hpcgate; from hpcgate import Client;"
        " found = [m.name for m in pkgutil.walk_packages(hpcgate.__path__, 'hpcgate.')];"
        " [importlib.import_module(m) for m in found if m != 'hpcgate.__main__'];"
        " print(sorted(found))"
    )
    imported = run(venv / "python", "-c", every, env=env)  # each module of the wheel
    assert "'hpcgate.client._jobs'" in imported and "'hpcgate.model.scheduler'" in imported


def test_the_client_alone_brings_nothing_of_the_server(venv: Path) -> None:
    probe = f"import importlib.util as u; print([m for m in {SERVER_STACK!r} if u.find_spec(m)])"
    assert run(venv / "python", "-c", probe, env=clean_env()).strip() == "[]"
    listing = "import hpcgate, os; print(os.listdir(hpcgate.__path__[0]))"
    installed = run(venv / "python", "-c", listing, env=clean_env())
    assert "cli.py" not in installed and "gateway.py" not in installed


def test_the_agent_alone_runs_and_brings_nothing_of_the_server(agent_venv: Path) -> None:
    env = clean_env()
    helped = run(agent_venv / "hpcgate-agent", "--help", env=env)
    assert "outbound" in helped and "--token-file" in helped
    every = (
        "import importlib, pkgutil, hpcgate;"
        " found = [m.name for m in pkgutil.walk_packages(hpcgate.__path__, 'hpcgate.')"
        " if not m.name.startswith(('hpcgate.client', 'hpcgate.usercli'))];"
        " [importlib.import_module(m) for m in found if not m.endswith('__main__')];"
        " print(sorted(found))"
    )
    imported = run(agent_venv / "python", "-c", every, env=env)  # each module it ships
    assert "'hpcgate.agent.dial'" in imported and "'hpcgate.transports.local'" in imported
    assert "'hpcgate.embedded.runner'" in imported
    stack = (*SERVER_STACK, "pydantic_settings")
    probe = f"import importlib.util as u; print([m for m in {stack!r} if u.find_spec(m)])"
    assert run(agent_venv / "python", "-c", probe, env=env).strip() == "[]"
    engine = run(agent_venv / "python", "-m", "hpcgate.embedded", "--help", env=env)
    assert "submit" in engine  # the embedded scheduler's engine the agent runs


def test_the_three_wheels_ship_every_source_file_once(wheels: dict[str, Path]) -> None:
    client, server = names(wheels["hpcgate_client"]), names(wheels["hpcgate"])
    agent = names(wheels["hpcgate_agent"])
    assert not client & server and not agent & server and not agent & client
    assert client | server | agent == set(sources())
    assert {"hpcgate/agent/dial.py", "hpcgate/agentwire/pipe.py"} <= agent
    assert {"hpcgate/__init__.py", "hpcgate/model/errors.py", "hpcgate/usercli/jobs.py"} <= client
    assert {"hpcgate/cli.py", "hpcgate/gateway.py", "hpcgate/api/app.py"} <= server


def test_both_distributions_have_the_same_version() -> None:
    server = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    client = tomllib.loads((ROOT / "client" / "pyproject.toml").read_text())["project"]
    assert server["version"] == client["version"] == hpcgate.__version__
    agent = tomllib.loads((ROOT / "agent" / "pyproject.toml").read_text())["project"]
    assert agent["version"] == server["version"]
    assert f"hpcgate-client=={hpcgate.__version__}" in server["dependencies"]
    assert f"hpcgate-agent=={hpcgate.__version__}" in server["dependencies"]
    assert f"hpcgate-client=={hpcgate.__version__}" in agent["dependencies"]
