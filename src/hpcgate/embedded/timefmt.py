"""Slurm's time-limit format (``sbatch --time``), parsed into seconds."""

from __future__ import annotations

from hpcgate.embedded.errors import UserError

# Slurm spells "no limit" in several ways; all of them mean no time limit here too.
_UNLIMITED = frozenset({"UNLIMITED", "INFINITE", "-1"})


def parse_time(text: str) -> int | None:
    """Seconds from a Slurm time string, or None for no limit.

    Accepted: ``M``, ``M:S``, ``H:M:S``, ``D-H``, ``D-H:M``, ``D-H:M:S`` (a bare number is
    minutes, as in Slurm), ``0``/``UNLIMITED``/``INFINITE`` for no limit.
    Raises :class:`UserError` on anything else.
    """
    value = text.strip()
    if value.upper() in _UNLIMITED:
        return None
    days, dash, clock = value.partition("-")
    if not dash:
        days, clock = "", value
    fields = [_number(part, text) for part in clock.split(":")]
    seconds = _days_clock(_number(days, text), fields, text) if dash else _clock(fields, text)
    return seconds or None  # as in Slurm, a zero limit means no limit


def _number(part: str, text: str) -> int:
    if not part.isascii() or not part.isdigit():
        raise UserError(f"invalid time limit {text!r}: use M, M:S, H:M:S, D-H, D-H:M or D-H:M:S")
    return int(part)


def _clock(fields: list[int], text: str) -> int:
    if len(fields) == 1:
        return fields[0] * 60
    if len(fields) == 2:
        return fields[0] * 60 + fields[1]
    if len(fields) == 3:
        return (fields[0] * 60 + fields[1]) * 60 + fields[2]
    raise UserError(f"invalid time limit {text!r}: too many ':' fields")


def _days_clock(days: int, fields: list[int], text: str) -> int:
    if len(fields) > 3:
        raise UserError(f"invalid time limit {text!r}: too many ':' fields")
    hours, minutes, seconds = [*fields, 0, 0][:3]
    return ((days * 24 + hours) * 60 + minutes) * 60 + seconds
