"""The job script of a function's pool: a bash script that runs hpcgate's worker module
(embedded, base64) with the function's spec (base64), on the function's Python.

Nothing is installed on the cluster; base64 text cannot end the here-document early, and
the interpreter is a checked word, quoted all the same.
"""

from __future__ import annotations

import base64
import importlib.resources
import json
import secrets
import shlex
from typing import Any

from hpcgate.model.functions import FunctionCreate

WORKER_MODULE = "worker.py"
END = "HPCGATE_WORKER"


def worker_source() -> bytes:
    """The text of :mod:`hpcgate.worker` (stdlib only), as shipped with the gateway."""
    return importlib.resources.files("hpcgate").joinpath(WORKER_MODULE).read_bytes()


def new_secret() -> str:
    """A pool's worker secret: every request of the gateway's carries it (the worker
    answers 401 to any other); a pool made again gets a new one."""
    return secrets.token_urlsafe(32)


def spec_of(function: FunctionCreate, secret: str | None = None) -> dict[str, Any]:
    """The spec the worker's ``main`` is given, as the functions contract has it."""
    return {
        "name": function.name,
        "source": function.source,
        "entry": function.entry.partition(":")[0] if function.entry else None,
        "callable": function.target(),
        "concurrency": function.concurrency.value,
        "max_concurrency": function.max_concurrency,
        "secret": secret,
    }


def job_script(function: FunctionCreate, worker: bytes, secret: str | None = None) -> str:
    """The pool's batch script: ``exec <python> -`` reading the worker from a here-document.

    The secret travels inside the script only: never in argv or the environment (where
    other processes of the node could see it). The scheduler keeps the script readable by
    its owner alone (the embedded one: mode 0700 in a 0700 spool; Slurm's spool and the
    node's copy: the job's user and Slurm's)."""
    spec = json.dumps(spec_of(function, secret)).encode()
    code = base64.b64encode(worker).decode()
    data = base64.b64encode(spec).decode()
    body = (
        f'import base64; exec(compile(base64.b64decode(b"{code}"), "hpcgate_worker", "exec"));'
        f' main(base64.b64decode(b"{data}"))'
    )
    python = shlex.quote(function.python)
    return f"#!/bin/bash\nexec {python} - <<'{END}'\n{body}\n{END}\n"
