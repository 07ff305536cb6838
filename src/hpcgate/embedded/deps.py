"""Job dependencies in Slurm's syntax, e.g. ``afterok:ID[:ID...]``.

Kinds: ``afterok`` (ended COMPLETED), ``afternotok`` (ended otherwise), ``afterany`` (ended)
and ``after`` (started or ended).

Several entries (list items, or one string with commas) must all hold. They are stored
normalised as one ``kind:id`` string per job they wait for.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from enum import Enum

from hpcgate.embedded.errors import UserError
from hpcgate.embedded.jobs import Job

KINDS = frozenset({"after", "afterany", "afterok", "afternotok"})


class Verdict(Enum):
    """Whether a job's dependencies allow it to start."""

    MET = "met"
    WAIT = "wait"
    NEVER = "never"


def parse_dependencies(entries: Iterable[str]) -> list[str]:
    """Normalise dependency strings into ``kind:id`` items; raise UserError on bad syntax."""
    items: list[str] = []
    for entry in entries:
        for clause in entry.split(","):
            items.extend(_clause(clause.strip(), entry))
    return list(dict.fromkeys(items))


def _clause(clause: str, entry: str) -> list[str]:
    kind, _, ids = clause.partition(":")
    targets = ids.split(":")
    valid = kind in KINDS and all(t.isascii() and t.isdigit() for t in targets)
    if not valid:
        raise UserError(
            f"invalid dependency {entry!r}: use after, afterany, afterok or afternotok, "
            "e.g. 'afterok:12' or 'afterany:3:4'"
        )
    return [f"{kind}:{int(target)}" for target in targets]


def dependency_ids(items: Iterable[str]) -> set[str]:
    """The ids of the jobs that ``items`` (normalised) wait for."""
    return {item.partition(":")[2] for item in items}


def verdict(items: Iterable[str], jobs: Mapping[str, Job]) -> Verdict:
    """Whether all dependency ``items`` are met, may still be met, or never will be."""
    verdicts = {_one(item, jobs) for item in items}
    for outcome in (Verdict.NEVER, Verdict.WAIT):
        if outcome in verdicts:
            return outcome
    return Verdict.MET


def _one(item: str, jobs: Mapping[str, Job]) -> Verdict:
    kind, _, job_id = item.partition(":")
    other = jobs.get(job_id)
    if other is None:
        return Verdict.NEVER  # its job was removed from the spool
    if not other.final:
        started = kind == "after" and other.state == "RUNNING"
        return Verdict.MET if started else Verdict.WAIT
    if kind == "afterok":
        return Verdict.MET if other.state == "COMPLETED" else Verdict.NEVER
    if kind == "afternotok":
        return Verdict.NEVER if other.state == "COMPLETED" else Verdict.MET
    return Verdict.MET  # after, afterany: any end will do
