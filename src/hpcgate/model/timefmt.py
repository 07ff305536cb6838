"""Slurm's time-limit and memory formats, parsed into seconds and mebibytes."""

from __future__ import annotations

import re

_TIME = re.compile(r"^(?:([0-9]+)-)?([0-9]+)(?::([0-9]+))?(?::([0-9]+))?$")
_MEMORY = re.compile(r"^(\d+)([KMGT]?)B?$", re.IGNORECASE)
_UNIT_MIB = {"K": 1 / 1024, "": 1, "M": 1, "G": 1024, "T": 1024 * 1024}


def parse_time_limit(text: str) -> int:
    """Seconds from a Slurm time string: M, M:S, H:M:S, D-H, D-H:M, D-H:M:S.

    As in Slurm a bare number is minutes.
    """
    match = _TIME.match(text.strip())
    if match is None:
        raise ValueError(f"invalid time limit {text!r}; use e.g. '30', '1:30:00' or '2-00:00:00'")
    days, first, second, third = match.groups()
    parts = [int(p) for p in (first, second, third) if p is not None]
    if days is not None:
        hours, minutes, seconds = [*parts, 0, 0][:3]
        return ((int(days) * 24 + hours) * 60 + minutes) * 60 + seconds
    if len(parts) == 1:
        return parts[0] * 60
    if len(parts) == 2:
        return parts[0] * 60 + parts[1]
    return (parts[0] * 60 + parts[1]) * 60 + parts[2]


def parse_memory(text: str) -> int:
    """Mebibytes from a Slurm memory string such as ``512M``, ``4G`` or ``4096``."""
    match = _MEMORY.match(text.strip())
    if match is None:
        raise ValueError(f"invalid memory {text!r}; use e.g. '512M' or '4G'")
    number, unit = match.groups()
    return max(1, round(int(number) * _UNIT_MIB[unit.upper()]))
