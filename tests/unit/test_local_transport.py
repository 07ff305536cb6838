"""The local transport's long commands, on real child processes."""

from __future__ import annotations

import sys

import anyio

from hpcgate.model.commands import Command
from hpcgate.transports.local import MAX_LINE, LocalTransport

WRITER = """
import sys
sys.stderr.write("x" * 200000 + "\\n")  # one line far over the limit
sys.stderr.write("y" * 2000000)  # and two megabytes more, more than a pipe holds
sys.stderr.write("done\\n")
"""


async def test_over_long_stderr_lines_never_stall_a_long_command() -> None:
    lines: list[str] = []
    with anyio.fail_after(30):
        result = await LocalTransport().run_long(
            Command((sys.executable, "-c", WRITER)), None, lines.append
        )
    assert result.returncode == 0
    assert "".join(lines) == "x" * 200000 + "y" * 2000000 + "done"  # newlines end lines
    assert max(len(line) for line in lines) <= MAX_LINE
