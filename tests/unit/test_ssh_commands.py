"""File operations as commands for a functional account behind hpcgate-forced: the argv the
SSH transport sends, that hpcgate-forced lets them through, and what their failures mean."""

from __future__ import annotations

import shlex

import pytest

from hpcgate.forced import DEFAULT_ALLOWED, argv_of
from hpcgate.model.commands import Command, CommandResult
from hpcgate.model.errors import (
    Conflict,
    Forbidden,
    HpcgateError,
    InsufficientStorage,
    NotFound,
    TransportError,
)
from hpcgate.transports.ssh import command_line
from hpcgate.transports.ssh_commands import (
    mkdir_command,
    parse_size,
    read_command,
    size_command,
)
from hpcgate.transports.ssh_errors import failure

PATHS = ("/home/svc/slurm-1.out", "-rf", "/tmp/a; rm -rf ~", "/tmp/$(id)", "/tmp/x\ny", "~")


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("timeout", [None, 125.0])
def test_hpcgate_forced_runs_them_as_sent(path: str, timeout: float | None) -> None:
    """Under the default allowed programs, with the transport's wrappers, the path last."""
    for command in (read_command(path, 0), size_command(path), mkdir_command(path)):
        argv = argv_of(command_line(command, timeout), DEFAULT_ALLOWED)
        assert argv[-2:] == ["--", path]
        assert argv[argv.index("env") : argv.index("env") + 3] == ["env", "--", "LC_ALL=C"]


def test_the_argv() -> None:
    assert read_command("/f", 0).argv == ("tail", "-c", "+1", "--", "/f")
    assert read_command("/f", 1 << 20).argv == ("tail", "-c", f"+{(1 << 20) + 1}", "--", "/f")
    assert size_command("/f").argv == ("stat", "-L", "-c", "%s", "--", "/f")
    assert mkdir_command("/d").argv == ("mkdir", "-p", "--", "/d")
    assert shlex.split(command_line(Command(("tail",), env={"LC_ALL": "C"})))[:3] == [
        "env",
        "--",
        "LC_ALL=C",
    ]


def result(returncode: int, stderr: str, stdout: bytes = b"") -> CommandResult:
    return CommandResult(returncode, stdout, stderr.encode())


@pytest.mark.parametrize(
    ("stderr", "kind"),
    [
        ("tail: cannot open '/x' for reading: No such file or directory\n", NotFound),
        ("stat: cannot statx '/x': No such file or directory\n", NotFound),
        ("tail: cannot open '/root/x' for reading: Permission denied\n", Forbidden),
        ("tail: error reading '/tmp': Is a directory\n", Conflict),
        ("mkdir: cannot create directory '/etc/hostname': File exists\n", Conflict),
        ("mkdir: cannot create directory '/etc/passwd': Not a directory\n", Conflict),
        ("mkdir: cannot create directory '/s/x': Disk quota exceeded\n", InsufficientStorage),
        ("mkdir: cannot create directory '/s/x': Read-only file system\n", Forbidden),
        # a path that reads like a reason does not decide: the reason comes last
        ("tail: cannot open 'Permission denied: x' for reading: Is a directory\n", Conflict),
    ],
)
def test_failures_by_their_reason(stderr: str, kind: type[HpcgateError]) -> None:
    error = failure(result(1, stderr), "tail", "/x")
    assert type(error) is kind
    assert error.detail.endswith(": /x")


def test_other_failures_are_transport_errors() -> None:
    refused = "hpcgate-forced: refused: 'tail' is not allowed here\n"
    error = failure(result(126, refused), "tail", "/x")
    assert isinstance(error, TransportError)
    assert "forced command refused 'tail'" in error.detail and "allow it there" in error.detail
    strange = failure(result(2, "tail: something new\n"), "tail", "/x")
    assert isinstance(strange, TransportError) and "something new" in strange.detail
    assert "no message" in failure(result(137, ""), "tail", "/x").detail


def test_sizes() -> None:
    assert parse_size(result(0, "", b"1234\n"), "/f") == 1234
    with pytest.raises(NotFound):
        parse_size(result(1, "stat: cannot statx '/f': No such file or directory\n"), "/f")
    with pytest.raises(TransportError, match="no size"):
        parse_size(result(0, "", b"big\n"), "/f")
