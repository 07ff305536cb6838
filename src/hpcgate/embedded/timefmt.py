"""``#SBATCH --time`` for the engine: hpcgate's Slurm time parser plus Slurm's "no limit"."""

from __future__ import annotations

from hpcgate.embedded.errors import UserError
from hpcgate.model.bounds import SECONDS_MAX
from hpcgate.model.timefmt import parse_time_limit

# Slurm spells "no limit" in several ways; all of them mean no time limit here too.
_UNLIMITED = frozenset({"UNLIMITED", "INFINITE", "-1"})


def parse_time(text: str) -> int | None:
    """Seconds from a Slurm time string, or None for no limit (``0``, ``UNLIMITED``...).

    Raises :class:`UserError` on a malformed string or one longer than the gateway stores.
    """
    if text.strip().upper() in _UNLIMITED:
        return None
    try:
        seconds = parse_time_limit(text)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    if seconds > SECONDS_MAX:
        raise UserError(f"time limit {text.strip()!r} is too long (at most {SECONDS_MAX} seconds)")
    return seconds or None  # as in Slurm, a zero limit means no limit
