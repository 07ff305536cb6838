"""The access log's line, made in one step.

uvicorn logs one line per request (client, request line, status) from inside the request,
on the event loop. Its formatter copies the record twice and formats the message it then
does not use: some two thirds of the line's cost, a few percent of a proxied request's
time on the loop. :class:`AccessLine` writes the very same line in one f-string; with
colours (a terminal) or any other record it leaves the work to uvicorn's formatter.
"""

from __future__ import annotations

import copy
import http
import logging
from typing import Any

from uvicorn.config import LOGGING_CONFIG
from uvicorn.logging import AccessFormatter

ACCESS_FORMAT = LOGGING_CONFIG["formatters"]["access"]["fmt"]
_PHRASES = {status.value: status.phrase for status in http.HTTPStatus}


class AccessLine(AccessFormatter):
    """uvicorn's access line without colours, as its own formatter writes it."""

    def format(self, record: logging.LogRecord) -> str:
        args = record.args
        if self.use_colors or record.exc_info or record.stack_info or self._fmt != ACCESS_FORMAT:
            return super().format(record)
        if not isinstance(args, tuple) or len(args) != 5 or not isinstance(args[4], int):
            return super().format(record)
        client, method, path, version, status = args
        assert isinstance(status, int)  # checked above; for mypy
        prefix = record.levelname + ":" + " " * (8 - len(record.levelname))
        phrase = _PHRASES.get(status, "")
        return f'{prefix} {client} - "{method} {path} HTTP/{version}" {status} {phrase}'


def log_config() -> dict[str, Any]:
    """uvicorn's logging configuration, its access lines made by :class:`AccessLine`."""
    config = copy.deepcopy(LOGGING_CONFIG)
    config["formatters"]["access"]["()"] = AccessLine
    return config
