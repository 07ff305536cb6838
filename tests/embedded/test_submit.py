"""Submission through the command line: validation, ids, tags, the spool itself."""

from __future__ import annotations

import json
import os
import select
import stat
import subprocess
import sys
from typing import Any

import pytest

from tests.embedded.engine import Engine

ECHO = "#!/bin/sh\necho hi\n"


def _refused(engine: Engine, document: dict[str, Any] | bytes, *options: str) -> str:
    """Submit ``document``; assert exit status 2 and a one-line message, return it."""
    raw = document if isinstance(document, bytes) else json.dumps(document).encode()
    result = engine.cli(*options, "submit", stdin=raw)
    assert (result.returncode, result.stdout) == (2, b""), result
    message = result.stderr.decode()
    assert message.endswith("\n") and message.count("\n") == 1, message
    return message


def test_ids_count_up_from_one_and_the_spool_is_private(engine: Engine) -> None:
    assert [engine.submit(ECHO) for _ in range(3)] == ["1", "2", "3"]
    assert stat.S_IMODE(engine.spool.stat().st_mode) == 0o700
    for job_id in ("1", "2", "3"):
        assert engine.wait_final(job_id)["state"] == "COMPLETED"


def test_a_tag_makes_submit_idempotent(engine: Engine) -> None:
    first = engine.submit(ECHO, tag="request-1")
    assert engine.submit("#!/bin/sh\necho other\n", tag="request-1") == first
    other = engine.submit(ECHO, tag="request-2")
    assert other != first
    assert sorted(engine.status()) == sorted([first, other])
    assert engine.job(first)["tag"] == "request-1"


def test_concurrent_submits_with_one_tag_create_one_job(engine: Engine) -> None:
    document = json.dumps(engine.document(ECHO, tag="raced")).encode()
    argv = [sys.executable, "-m", "hpcgate.embedded", "--spool", str(engine.spool), "submit"]
    processes = [
        subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE) for _ in range(6)
    ]
    outputs = [process.communicate(document, timeout=60)[0] for process in processes]
    assert {json.loads(output)["id"] for output in outputs} == {"1"}
    assert list(engine.status()) == ["1"]


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"script": "echo no interpreter line\n"}, "#!"),
        ({"script": None}, "exactly one of script and script_path"),
        ({"script_path": "/etc/hostname"}, "exactly one of script and script_path"),
        ({"script": None, "script_path": "/nonexistent/job.sh"}, "cannot read script_path"),
        ({"script": "#!/bin/sh\n#SBATCH --time=soon\n"}, "invalid time limit"),
        ({"time_limit": "1:00"}, "time_limit"),
        ({"time_limit": 0}, "time_limit"),
        ({"workdir": "/nonexistent/dir"}, "working directory"),
        ({"env": {"A=B": "x"}}, "environment variable"),
        ({"env": ["A"]}, "env must be"),
        ({"name": 5}, "name must be a string"),
        ({"dependencies": "afterok:1"}, "dependencies must be a list"),
        ({"colour": "blue"}, "unknown field(s) in the job document: colour"),
    ],
)
def test_bad_documents_are_refused(engine: Engine, fields: dict[str, Any], message: str) -> None:
    assert message in _refused(engine, {**engine.document(ECHO), **fields})
    assert engine.status() == {}


@pytest.mark.parametrize("raw", [b"", b"{", b"[1]", b'"script"'])
def test_a_document_that_is_no_json_object_is_refused(engine: Engine, raw: bytes) -> None:
    assert "job document" in _refused(engine, raw)


@pytest.mark.parametrize("options", [("--slots", "0"), ("--kill-wait", "-1"), ("--slots", "x")])
def test_bad_options_are_refused(engine: Engine, options: tuple[str, ...]) -> None:
    _refused(engine, engine.document(ECHO), *options)


def test_unknown_job_ids(engine: Engine) -> None:
    engine.submit(ECHO)
    for command in (("cancel", "1", "42"), ("cancel", "x"), ("run", "42")):
        result = engine.cli(*command)
        assert (result.returncode, result.stderr) == (3, b"unknown job ID\n"), command
    assert engine.status("42") == {}
    assert engine.wait_final("1")["state"] == "COMPLETED"  # "cancel 1 42" cancelled nothing


def test_a_leaked_descriptor_never_reaches_the_supervisor(engine: Engine) -> None:
    """A caller that leaks a pipe to submit (uvloop does) gets end-of-file when submit ends,
    not when the detached supervisor of the started job ends."""
    read_end, write_end = os.pipe()
    document = json.dumps(engine.document("#!/bin/sh\nsleep 30\n")).encode()
    argv = [sys.executable, "-m", "hpcgate.embedded", "--spool", str(engine.spool), "submit"]
    with subprocess.Popen(
        argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, pass_fds=(write_end,)
    ) as process:
        process.communicate(document, timeout=60)
    os.close(write_end)
    engine.wait_state("1", "RUNNING")
    readable, _, _ = select.select([read_end], [], [], 10)
    assert readable, "a supervisor still holds the leaked pipe open"
    assert os.read(read_end, 1) == b""
    os.close(read_end)
