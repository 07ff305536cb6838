"""hpcgate-forced's decision, on the requests a client could send through sshd."""

from __future__ import annotations

import shlex

import pytest

from hpcgate.forced import DEFAULT_ALLOWED, Refused, argv_of, parse_allowed


@pytest.mark.parametrize(
    "argv",
    [
        ["squeue", "--json"],
        ["sbatch", "--parsable", "--job-name", "a; rm -rf / $(id) `id` | x > y"],
        ["scancel", "12"],
        ["env", "-i", "--", "FOO=bar baz", "OMP_NUM_THREADS=4", "sbatch", "--parsable"],
        ["sacct", "--format", "JobID,State", "--noheader", "*"],
        ["timeout", "-s", "KILL", "35", "env", "--", "A=1", "sbatch", "--parsable"],
        ["timeout", "-s", "KILL", "35", "squeue"],
        ["pbs_rstat", "-f"],
        ["timeout", "-s", "KILL", "125", "env", "--", "LC_ALL=C", "tail", "-c", "+1", "--", "/a"],
        ["env", "--", "LC_ALL=C", "stat", "-L", "-c", "%s", "--", "/a b/$(id)"],
        ["env", "--", "LC_ALL=C", "mkdir", "-p", "--", "/home/svc/jobs; rm -rf ~"],
    ],
)
def test_the_gateway_s_own_commands_run_as_given(argv: list[str]) -> None:
    assert argv_of(shlex.join(argv), DEFAULT_ALLOWED) == argv


@pytest.mark.parametrize(
    ("request_", "why"),
    [
        (None, "no command"),
        ("", "empty"),
        ("   ", "empty"),
        ("squeue; id", "not a plain argv"),
        ("squeue && id", "not a plain argv"),
        ("squeue | sh", "not a plain argv"),
        ("squeue > /tmp/x", "not a plain argv"),
        ("squeue $(id)", "not a plain argv"),
        ("squeue `id`", "not a plain argv"),
        ('squeue "$HOME"', "not a plain argv"),
        ("squeue\nid", "not a plain argv"),
        ("squeue 'unclosed", "unparseable"),
        ("bash", "'bash' is not allowed"),
        ("sh -c squeue", "'sh' is not allowed"),
        ("/usr/bin/squeue", "'/usr/bin/squeue' is not allowed"),
        ("python3 -c 'import os'", "'python3' is not allowed"),
        ("env -S 'sh -c id'", "option '-S'"),
        ("env FOO=1", "env without a program"),
        ("env FOO=1 bash", "'bash' is not allowed"),
        ("squeue\0", "NUL"),
        ("timeout 5 bash", "'timeout' is not allowed"),
        ("timeout -s KILL 5 bash", "'bash' is not allowed"),
        ("timeout -s KILL 5", "'timeout' is not allowed"),
        ("timeout -s KILL 5 env -S x", "option '-S'"),
    ],
)
def test_anything_else_is_refused(request_: str | None, why: str) -> None:
    with pytest.raises(Refused, match=why):
        argv_of(request_, DEFAULT_ALLOWED)


def test_the_administrator_narrows_the_programs() -> None:
    allowed = parse_allowed(["--allow", "squeue"])
    assert argv_of("squeue", allowed) == ["squeue"]
    with pytest.raises(Refused, match="'sbatch' is not allowed"):
        argv_of("sbatch --parsable", allowed)


@pytest.mark.parametrize("args", [["--allow"], ["--allow", "/bin/sh"], ["-x"], ["--allow", ""]])
def test_a_bad_forced_command_line_refuses_everything(args: list[str]) -> None:
    with pytest.raises(Refused):
        parse_allowed(args)
