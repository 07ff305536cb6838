"""Slurm's text: its states, times, durations, exit statuses and error messages.

Shared by the job adapter (:mod:`hpcgate.schedulers.slurm`) and the resource adapter
(:mod:`hpcgate.schedulers.slurm_info`).
"""

from __future__ import annotations

import re
from datetime import datetime

from hpcgate.model.bounds import reported_local
from hpcgate.model.commands import CommandResult
from hpcgate.model.errors import SchedulerRejected, SchedulerUnavailable
from hpcgate.model.jobs import JobState

SEP = "\x1f"  # a separator no job name or path is expected to hold (unlike '|')

STATES: dict[str, JobState] = {
    "PENDING": JobState.PENDING,
    "CONFIGURING": JobState.PENDING,
    "REQUEUED": JobState.PENDING,
    "REQUEUE_FED": JobState.PENDING,
    "REQUEUE_HOLD": JobState.PENDING,
    "RESV_DEL_HOLD": JobState.PENDING,
    "RUNNING": JobState.RUNNING,
    "COMPLETING": JobState.RUNNING,
    "STAGE_OUT": JobState.RUNNING,
    "SIGNALING": JobState.RUNNING,
    "RESIZING": JobState.RUNNING,
    "SUSPENDED": JobState.SUSPENDED,
    "STOPPED": JobState.SUSPENDED,
    "COMPLETED": JobState.COMPLETED,
    "FAILED": JobState.FAILED,
    "SPECIAL_EXIT": JobState.FAILED,
    "CANCELLED": JobState.CANCELLED,
    "REVOKED": JobState.CANCELLED,
    "TIMEOUT": JobState.TIMEOUT,
    "DEADLINE": JobState.TIMEOUT,
    "OUT_OF_MEMORY": JobState.OUT_OF_MEMORY,
    "NODE_FAIL": JobState.NODE_FAIL,
    "BOOT_FAIL": JobState.NODE_FAIL,
    "PREEMPTED": JobState.PREEMPTED,
}

# Messages with which the client tools say the controller (not the request) is the problem.
UNAVAILABLE = (
    "Unable to contact slurm controller",
    "Socket timed out",
    "Zero Bytes were transmitted",
    "Slurm backup controller in standby mode",
    "Connection refused",
    "Connection reset by peer",
)
_PREFIX = re.compile(r"^[a-z_]+: error: ")


def raise_for(result: CommandResult) -> None:
    """Translate a failed Slurm command: controller trouble is 503, anything else 422."""
    if result.ok:
        return
    message = "; ".join(_PREFIX.sub("", line) for line in result.error_text().splitlines())
    if any(marker in message for marker in UNAVAILABLE):
        raise SchedulerUnavailable(message)
    raise SchedulerRejected(message)


def format_duration(seconds: int) -> str:
    """Seconds as Slurm's D-HH:MM:SS."""
    minutes, secs = divmod(seconds, 60)
    hours, mins = divmod(minutes, 60)
    days, hrs = divmod(hours, 24)
    return f"{days}-{hrs:02d}:{mins:02d}:{secs:02d}"


def parse_duration(text: str) -> int | None:
    """Seconds from Slurm's [D-]HH:MM:SS / MM:SS output; None for UNLIMITED and the like."""
    days, _, clock = text.rpartition("-")
    parts = clock.split(":")
    if not all(part.isdigit() for part in parts) or (days and not days.isdigit()):
        return None
    numbers = [int(part) for part in parts]
    while len(numbers) < 3:
        numbers.insert(0, 0)
    hours, minutes, secs = numbers[-3:]
    return ((int(days or 0) * 24 + hours) * 60 + minutes) * 60 + secs


def state_of(text: str) -> JobState:
    """A job state from Slurm's name (``CANCELLED by 1000`` reads as CANCELLED)."""
    name = text.split(" ", 1)[0].rstrip("+")
    return STATES.get(name, JobState.FAILED if name else JobState.PENDING)


def time_of(text: str) -> datetime | None:
    """Slurm prints local times without a zone, and N/A, Unknown or None for no time."""
    try:
        local = datetime.fromisoformat(text)
    except ValueError:
        return None
    return reported_local(local, "a reported time")


def exit_status(text: str) -> tuple[int | None, int | None]:
    """``exit:signal`` as Slurm prints it, as (exit code, signal)."""
    code, _, signal = text.partition(":")
    if not code.isdigit() or not signal.isdigit():
        return None, None
    if int(signal):
        return None, int(signal)
    return int(code), None


def hostnames(text: str | None) -> list[str]:
    """A Slurm host list (``node[1-3,07],gpu1``) expanded to names."""
    names: list[str] = []
    for part in re.findall(r"[^,\[]+(?:\[[^\]]*\][^,\[]*)*", text or ""):
        names.extend(_expand(part))
    return names


def _expand(pattern: str) -> list[str]:
    match = re.search(r"\[([^\]]*)\]", pattern)
    if match is None:
        return [pattern]
    head, tail = pattern[: match.start()], pattern[match.end() :]
    expanded: list[str] = []
    for item in match.group(1).split(","):
        low, _, high = item.partition("-")
        width = len(low)
        for index in range(int(low), int(high or low) + 1):
            expanded.extend(_expand(f"{head}{index:0{width}d}{tail}"))
    return expanded
