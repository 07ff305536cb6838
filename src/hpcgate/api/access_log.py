"""The access log, written off the event loop.

uvicorn logs one line per request (client, request line, status) from inside the request,
on the event loop: formatting the line and writing it to stdout (a write and a flush per
line) came to some 4% of a proxied request's time on the loop. Here its logger hands each
record to a queue instead, and a thread formats and writes it: the same lines in the same
order and format (uvicorn's own formatter), while the loop only makes the record. Lines
still queued at exit are written by :func:`logging.shutdown`, which closes the handler.
"""

from __future__ import annotations

import copy
import logging
import queue
import sys
from logging.handlers import QueueListener
from typing import IO, Any

from uvicorn.config import LOGGING_CONFIG


class QueuedStreamHandler(logging.Handler):
    """Writes each record to ``stream`` from a thread of its own, in the order emitted."""

    def __init__(self, stream: IO[str] | None = None) -> None:
        super().__init__()
        self._queue: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
        self._writer = logging.StreamHandler(stream or sys.stdout)
        self._listener = QueueListener(self._queue, self._writer)
        self._listener.start()
        self._open = True

    def setFormatter(self, fmt: logging.Formatter | None) -> None:
        self._writer.setFormatter(fmt)  # the thread formats

    def emit(self, record: logging.LogRecord) -> None:
        self._queue.put_nowait(record)

    def close(self) -> None:
        if self._open:  # stop() twice would wait forever
            self._open = False
            self._listener.stop()  # writes what is queued, then ends the thread
        self._writer.close()
        super().close()


def log_config() -> dict[str, Any]:
    """uvicorn's logging configuration, its access lines written by the handler above."""
    config = copy.deepcopy(LOGGING_CONFIG)
    config["handlers"]["access"] = {
        "()": QueuedStreamHandler,
        "formatter": "access",
        "stream": "ext://sys.stdout",
    }
    return config
