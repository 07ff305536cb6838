"""The access log's fast formatter writes uvicorn's own line, byte for byte."""

from __future__ import annotations

import logging

import pytest
from uvicorn.logging import AccessFormatter

from hpcgate.api.access_log import ACCESS_FORMAT, AccessLine


def _record(level: int, *args: object) -> logging.LogRecord:
    return logging.LogRecord(
        "uvicorn.access", level, __file__, 1, '%s - "%s %s HTTP/%s" %d', args, None
    )


@pytest.mark.parametrize("status", [101, 200, 204, 304, 404, 413, 418, 502, 599])
@pytest.mark.parametrize("level", [logging.INFO, logging.WARNING])
def test_the_line_is_uvicorns(status: int, level: int) -> None:
    record = _record(
        level, "10.0.0.7:51234", "POST", "/v1/chat/completions?x=%C3%A9", "1.1", status
    )
    ours = AccessLine(ACCESS_FORMAT, use_colors=False).format(record)
    assert ours == AccessFormatter(ACCESS_FORMAT, use_colors=False).format(record)


def test_with_colours_or_other_records_uvicorns_formatter_makes_it() -> None:
    record = _record(logging.INFO, "10.0.0.7:51234", "GET", "/", "1.1", 200)
    coloured = AccessLine(ACCESS_FORMAT, use_colors=True).format(record)
    assert coloured == AccessFormatter(ACCESS_FORMAT, use_colors=True).format(record)
    assert "\x1b[" in coloured
    odd = _record(logging.INFO, "a", "b", "c", "d", "200")  # a status that is no int
    odd.msg = '%s - "%s %s HTTP/%s" %s'
    assert AccessLine(ACCESS_FORMAT, use_colors=False).format(odd).endswith('"b c HTTP/d" 200 OK')
