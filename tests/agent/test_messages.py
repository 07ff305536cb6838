"""The agent's messages decode strictly: anything but a request of a known operation with
exactly its arguments, each of its type, is a ProtocolError (never another exception)."""

from __future__ import annotations

from typing import Any

import pytest

from hpcgate.agentwire import messages as m
from hpcgate.agentwire.frames import ProtocolError

RUN = {"argv": ["squeue"], "stdin": None, "env": None, "timeout": 5}


def body(op: str = "run", args: Any = None, **extra: Any) -> dict[str, Any]:
    return {"op": op, "args": RUN if args is None else args, "account": None, **extra}


def test_every_operation_round_trips() -> None:
    samples: list[m.Request[Any]] = [
        m.Run(("sbatch", "--parsable"), b"#!/bin/sh\n\xff", {"A": "1"}, 30.0),
        m.RunFiles(("tar", m.Beneath("/r/a", "/r", "folder", "-C"), "--")),
        m.LookupUser("alice"),
        m.OwnHome(),
        m.ListDir("/r", "/r/x", True, 2, False),
        m.Head("/r", "/r/x", None, 10),
        m.HandleWrite(3, bytes(range(256))),
    ]
    assert {type(sample).op for sample in samples} <= set(m.OPERATIONS)
    for sample in samples:
        assert m.parse_request(m.request_fields(sample, "alice")) == (sample, "alice")


def test_results_round_trip_and_failures_are_typed() -> None:
    user = m.User("alice", 1000, 1000, "/home/alice", (1000, 27))
    assert m.parse_result(m.LookupUser("alice"), m.result_fields(m.LookupUser("a"), user)) == user
    output = m.Output(1, b"out", b"\x00err")
    assert m.parse_result(m.Run(("x",), None, None, 1), {"ok": True, "value": {
        "returncode": 1, "stdout": "b3V0", "stderr": "AGVycg=="}}) == output  # fmt: skip
    failure = m.parse_result(m.OwnHome(), m.failure_fields("NotFound", "x" * 5000))
    assert isinstance(failure, m.Failure) and len(failure.message) == 2000


@pytest.mark.parametrize(
    "fields",
    [
        body("rm"),  # unknown operation
        body("__class__"),
        body(args={**RUN, "shell": True}),  # unknown argument
        body(args={"argv": ["squeue"], "stdin": None, "env": None}),  # missing argument
        body(args={**RUN, "argv": "squeue"}),  # a string, not a list
        body(args={**RUN, "argv": []}),  # no program
        body(args={**RUN, "argv": ["x"] * (m.MAX_ARGV_WORDS + 1)}),
        body(args={**RUN, "argv": [1]}),
        body(args={**RUN, "timeout": True}),  # a bool is no number
        body(args={**RUN, "timeout": "5"}),
        body(args={**RUN, "stdin": "not base64!"}),
        body(args={**RUN, "env": {"A": 1}}),
        body(args={**RUN, "env": ["A=1"]}),
        body(args=[]),
        body(account=5),
        body(extra=1),
        {"op": "run", "args": RUN},  # no account field
        body("run_files", {"argv": ["cp", {"path": "/x", "root": None, "part": "path"}]}),
        body(
            "run_files",
            {"argv": ["cp", {"path": "/x", "root": None, "part": "path", "prefix": "", "x": 1}]},
        ),
        body("lookup_user", {"name": None}),
        body("read", {"root": None, "path": "/x", "offset": 1.5, "size": 1}),
    ],
)
def test_hostile_requests_are_protocol_errors(fields: dict[str, Any]) -> None:
    with pytest.raises(ProtocolError):
        m.parse_request(fields)


@pytest.mark.parametrize(
    "fields",
    [{}, {"ok": True}, {"ok": "yes", "value": 1}, {"ok": True, "value": 1, "x": 1},
     {"ok": False, "error": {"kind": "x"}}, {"ok": True, "value": "/home"}],
)  # fmt: skip
def test_hostile_results_are_protocol_errors(fields: dict[str, Any]) -> None:
    with pytest.raises(ProtocolError):
        m.parse_result(m.Size(None, "/x"), fields)
