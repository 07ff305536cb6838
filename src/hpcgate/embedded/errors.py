"""The two kinds of error the command line reports with their own exit status."""

from __future__ import annotations


class UserError(Exception):
    """A request the engine refuses (exit status 2); the message is shown to the user."""


class UnknownJob(Exception):
    """A job id that is not in the spool (exit status 3)."""

    def __init__(self) -> None:
        super().__init__("unknown job ID")
