"""The pool's job script: bash that feeds the embedded worker and the function's spec to
Python through a here-document, run here for real with a stand-in worker module."""

from __future__ import annotations

import json
import subprocess
import sys

from hpcgate.functions.script import END, job_script, new_secret
from hpcgate.model.functions import FunctionCreate

#: A stand-in for hpcgate's worker: prints the spec it is given. Its text holds the
#: here-document's end word on a line of its own, which base64 keeps from ending it.
STAND_IN = f"import sys\n'''\n{END}\n'''\ndef main(spec):\n    sys.stdout.write(spec.decode())\n"


def test_the_script_runs_the_worker_with_the_spec() -> None:
    source = f"def f():\n    return '''\n{END}\n'''\n"
    function = FunctionCreate.model_validate(
        {"name": "g", "system": "local", "source": source, "python": sys.executable}
    )
    script = job_script(function, STAND_IN.encode())
    assert script.startswith("#!/bin/bash\n")
    ran = subprocess.run(["bash", "-c", script], capture_output=True, check=True, timeout=30)
    assert json.loads(ran.stdout) == {
        "name": "g",
        "source": source,
        "entry": None,
        "callable": "g",
        "concurrency": "threads",
        "max_concurrency": 8,
        "secret": None,
    }


def test_the_secret_is_in_the_spec_and_nowhere_else_in_the_script() -> None:
    function = FunctionCreate.model_validate(
        {"name": "g", "system": "local", "source": "def g(): pass\n", "python": sys.executable}
    )
    secret = new_secret()
    script = job_script(function, STAND_IN.encode(), secret)
    assert secret not in script  # not in clear: no argv, no environment, no shell word
    ran = subprocess.run(["bash", "-c", script], capture_output=True, check=True, timeout=30)
    assert json.loads(ran.stdout)["secret"] == secret
    assert new_secret() != secret and len(secret) >= 43  # 32 random bytes


def test_an_entry_names_its_module_and_callable() -> None:
    function = FunctionCreate.model_validate(
        {"name": "g", "system": "local", "entry": "pkg.mod:run", "python": sys.executable}
    )
    ran = subprocess.run(
        ["bash", "-c", job_script(function, STAND_IN.encode())],
        capture_output=True,
        check=True,
        timeout=30,
    )
    spec = json.loads(ran.stdout)
    assert (spec["entry"], spec["callable"], spec["source"]) == ("pkg.mod", "run", None)
