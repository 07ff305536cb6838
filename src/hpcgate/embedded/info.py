"""``info``: what the engine has to run jobs on, as one machine with ``slots`` job slots."""

from __future__ import annotations

import os
import socket
from typing import Any

from hpcgate.embedded.jobs import load_jobs
from hpcgate.embedded.spool import Spool, load_config


def machine_info(spool: Spool) -> dict[str, Any]:
    """``{"host", "slots", "running", "pending", "memory_mib"}`` (memory: the machine's)."""
    jobs = load_jobs(spool)
    return {
        "host": socket.gethostname(),
        "slots": load_config(spool).slots,
        "running": sum(1 for job in jobs if job.state == "RUNNING"),
        "pending": sum(1 for job in jobs if job.state == "PENDING"),
        "memory_mib": _memory_mib(),
    }


def _memory_mib() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // (1 << 20)
    except (ValueError, OSError):
        return 0
