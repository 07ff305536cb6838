"""The files throughput targets of issue 14, as ratios of one run's transfers, with a verdict.

Every ratio is taken round by round (a transfer against its baseline of the same round, so
both saw the same load) and the median of those is judged against the target:

* download through the gateway (local transport) >= 0.8 of ``cp``;
* upload through the gateway >= 0.9 of the raw Python receiver (``bench/raw_receive.py``,
  its ``recv`` mode: no HTTP, no checks) and >= 1.5 x ``scp`` of the same file up through
  the test sshd;
* over SSH (a gateway whose system reaches the same sshd, files over SFTP): download >= 1.0 x
  ``scp`` down and upload >= 1.0 x ``scp`` up;
* memory flat: no gateway transfer grows the gateway's resident memory by more than
  :data:`FLAT_MIB`, whatever the file's size.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass

FLAT_MIB = 32.0


@dataclass(frozen=True)
class Target:
    transfer: str
    baseline: str
    ratio: float


CLIENTS = ("curl", "lean")
TARGETS = tuple(
    target
    for client in CLIENTS
    for target in (
        Target(f"download_{client}", "cp", 0.8),
        Target(f"upload_{client}", "raw_receive", 0.9),
        Target(f"upload_{client}", "scp_up", 1.5),
        Target(f"ssh_download_{client}", "scp_down", 1.0),
        Target(f"ssh_upload_{client}", "scp_up", 1.0),
    )
)


def verdicts(seconds: dict[str, list[float]]) -> list[dict[str, object]]:
    """Each target whose two transfers were both measured: the median of the per-round
    ratios of their speeds (the baseline's seconds over the transfer's), all the ratios,
    and whether the median meets the target."""
    found = []
    for target in TARGETS:
        mine, theirs = seconds.get(target.transfer), seconds.get(target.baseline)
        if not mine or not theirs:
            continue
        ratios = [base / took for took, base in zip(mine, theirs, strict=True)]
        median = statistics.median(ratios)
        found.append(
            {
                "measure": f"{target.transfer} / {target.baseline}",
                "target": f">= {target.ratio:g}",
                "median": round(median, 2),
                "rounds": [round(r, 2) for r in ratios],
                "met": median >= target.ratio,
            }
        )
    return found


def flat(growth_mib: dict[str, float]) -> dict[str, object]:
    """Memory: the largest growth of the gateway's RSS during any one transfer."""
    worst = max(growth_mib.values(), default=0.0)
    return {
        "measure": "gateway RSS growth during a transfer, MiB (worst)",
        "target": f"<= {FLAT_MIB:g}",
        "worst": round(worst, 1),
        "met": worst <= FLAT_MIB,
    }
