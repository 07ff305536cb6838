"""PBS's text: its JSON, times, durations, sizes and error messages.

Shared by the job adapter (:mod:`hpcgate.schedulers.pbs`) and the resource adapter
(:mod:`hpcgate.schedulers.pbs_info`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from hpcgate.model.bounds import reported_epoch, reported_local
from hpcgate.model.commands import CommandResult
from hpcgate.model.errors import SchedulerRejected, SchedulerUnavailable

# Messages with which the client commands say the server (not the request) is the problem.
UNAVAILABLE = (
    "cannot connect to server",
    "Couldn't connect to cluster",
    "Connection refused",
    "Connection timed out",
    "No route to host",
    "Communication failure",
    "Too many open connections",
    "No default server name",
    "Unknown Host",
    "Server shutting down",
    "System call failure",
)

_MONTHS = {
    name: number
    for number, name in enumerate(
        ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"),
        start=1,
    )
}
_SIZE_UNITS: dict[str, int] = {"": 1, "k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40, "p": 2**50}
_SIZE = re.compile(r"^(\d+)([kmgtp]?)([bw]?)$", re.IGNORECASE)
_PREFIX = re.compile(r"^(qsub|qstat|qdel|pbsnodes|pbs_rstat): ", re.MULTILINE)
_ESCAPE = re.compile(r"\\(.)", re.DOTALL)
_ZERO_PADDED = re.compile(r"(:\s*)(-?0\d+(?:\.\d+)?)(?=\s*[,}\]])")


def parse_duration(value: object) -> int | None:
    """Seconds from PBS's [[HH:]MM:]SS (or a bare number of seconds)."""
    if isinstance(value, int):
        return value
    parts = str(value).split(":") if value is not None else []
    if not parts or len(parts) > 3 or not all(part.isdigit() for part in parts):
        return None
    seconds = 0
    for part in parts:
        seconds = seconds * 60 + int(part)
    return seconds


def time_of(value: object) -> datetime | None:
    """PBS prints ctime(3)-style times ("Sun Nov 22 10:00:00 2026") without a zone; like
    Slurm's they are read as the gateway's local time, so both should share a zone."""
    if isinstance(value, int):
        return reported_epoch(value, "a reported time")
    parts = value.split() if isinstance(value, str) else []
    if len(parts) != 5 or parts[1] not in _MONTHS:
        return None
    _weekday, month, day, clock, year = parts
    try:
        hour, minute, second = (int(part) for part in clock.split(":"))
        local = datetime(int(year), _MONTHS[month], int(day), hour, minute, second)
    except ValueError:
        return None
    return reported_local(local, "a reported time")


def parse_size_mb(value: object) -> int | None:
    """MiB from a PBS size (``263855216kb``, ``4gb``, ``512mb``; bare numbers are bytes)."""
    match = _SIZE.match(str(value)) if value is not None else None
    if match is None:
        return None
    number, unit, kind = match.groups()
    size = int(number) * _SIZE_UNITS[unit.lower()] * (8 if kind.lower() == "w" else 1)
    return size // _SIZE_UNITS["m"]


def read_json(raw: bytes, command: str) -> dict[str, Any]:
    """A JSON document as PBS prints it, mending two known flaws of its encoder: numbers
    with leading zeros (an environment value "007" printed bare) and ``\\,``-style escapes
    JSON does not have."""
    text = raw.decode(errors="replace")
    try:
        document = json.loads(text)
    except json.JSONDecodeError:
        try:
            document = json.loads(_mended(text))
        except json.JSONDecodeError as exc:
            raise SchedulerUnavailable(f"{command} printed unreadable JSON: {exc}") from None
    if not isinstance(document, dict):
        raise SchedulerUnavailable(f"{command} printed JSON that is not an object")
    return document


def _mended(text: str) -> str:
    text = _ESCAPE.sub(lambda m: m.group(0) if m.group(1) in '"\\/bfnrtu' else m.group(1), text)
    return _ZERO_PADDED.sub(r'\1"\2"', text)


def raise_for(result: CommandResult) -> None:
    """Translate a failed PBS command: an unreachable server is 503, anything else 422."""
    if not result.ok:
        raise_message(result.error_text())


def raise_message(text: str) -> None:
    message = _PREFIX.sub("", text).strip()
    if any(marker in message for marker in UNAVAILABLE):
        raise SchedulerUnavailable(message)
    raise SchedulerRejected(message)


def as_mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, dict) else {}


def as_int(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    try:
        return int(str(value))
    except ValueError:
        return None


def as_text(value: object) -> str | None:
    """A string attribute; qstat's JSON prints digit-only values (a job named 42) as numbers."""
    return None if value is None or value == "" else str(value)
