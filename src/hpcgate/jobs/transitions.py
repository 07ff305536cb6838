"""How a job's row follows what its scheduler reports: what one watcher poll changes.

Decisions only, with no I/O and no clock: given the rows the gateway knows and one poll's
reports, which rows change, which array tasks become rows of their own, and which state
changes are recorded as events. The store writes the result in one transaction and the
watcher publishes the events; the rules themselves live here, in one place.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from hpcgate.model.jobs import JobState
from hpcgate.model.scheduler import SchedulerJob
from hpcgate.store.jobs import REPORTED, JobWrites, StateChange
from hpcgate.store.tables import JobRow

#: A change of any of these is a change of state, recorded once as an event.
_TRACKED = ("state", "reason", "exit_code", "signal")
#: The rest of a report: taken where the report has it, else the row keeps its own.
_FILLED = tuple(column for column in REPORTED if column not in _TRACKED)
#: Taken from a report only while the row has none: the gateway records when a job was
#: submitted, and the submit's answer, every read and every poll then show that one time
#: (a scheduler's own clock or rounding would change it after the 201).
_KEPT = frozenset({"submit_time"})


def unlisted_tasks(
    rows: Mapping[str, JobRow], seen: Sequence[SchedulerJob]
) -> list[tuple[str, str]]:
    """The (system, native id) of each reported task of a known array that is not among
    ``rows``: an earlier poll may have recorded it and it has ended since (so it left the
    live rows while its array runs on). Its row must be found, not inserted a second time.
    """
    unlisted = []
    for report in seen:
        array = rows.get(report.array_job_id or "")
        if array is not None and report.native_id not in rows:
            unlisted.append((array.system, report.native_id))
    return unlisted


def follow(rows: dict[str, JobRow], seen: Sequence[SchedulerJob], now: datetime) -> JobWrites:
    """What the reports change: each known job's row brought up to date, a row for each
    array task seen for the first time (added to ``rows``), and an event per change of
    state. ``rows`` are the known rows by native id; they are updated in place."""
    writes = JobWrites()
    for report in seen:
        _follow(rows, report, now, writes)
    return writes


def _follow(
    rows: dict[str, JobRow], report: SchedulerJob, now: datetime, writes: JobWrites
) -> None:
    row = rows.get(report.native_id)
    fresh = row is None
    if row is None:
        array = rows.get(report.array_job_id or "")
        if array is None:
            return  # neither a known job nor a task of a known array
        row = rows[report.native_id] = _new_task(array, report.native_id, now)
    elif not _differs(row, report):
        return
    (writes.created if fresh else writes.updated).append(row)
    event = _take(row, report, now, always=fresh)
    if event is not None:
        writes.events.append((row, event))


def _new_task(array: JobRow, native_id: str, now: datetime) -> JobRow:
    """A row for an array task seen for the first time, owned like its array."""
    return JobRow(
        system=array.system,
        native_id=native_id,
        array_job_id=array.native_id,
        owner=array.owner,
        name=array.name,
        state=JobState.PENDING.value,
        submit_time=array.submit_time,
        working_directory=array.working_directory,
        time_limit=array.time_limit,
        tag=uuid.uuid4().hex,  # tags guard submits; a task is never submitted on its own
        spec=array.spec,
        created_at=now,
        updated_at=now,
    )


def details(row: JobRow, report: SchedulerJob) -> dict[str, Any]:
    """What a report tells of a job beyond its state (its name, output files, limits...)
    that the row has none of yet: a job just submitted shows them from the first answer."""
    return {
        field: getattr(report, field)
        for field in _FILLED
        if field not in _KEPT and getattr(row, field) is None and getattr(report, field) is not None
    }


def _differs(row: JobRow, report: SchedulerJob) -> bool:
    return any(_news(row, report, field) for field in REPORTED) or (report.state != row.state)


def _news(row: JobRow, report: SchedulerJob, field: str) -> bool:
    """Whether the report brings the row a new value of ``field``."""
    reported, known = getattr(report, field), getattr(row, field)
    if reported is None or (field in _KEPT and known is not None):
        return False
    return bool(known != reported)


def _take(row: JobRow, report: SchedulerJob, now: datetime, always: bool) -> StateChange | None:
    """Copy the report into the row; the event to record if its state changed."""
    changed = always or any(getattr(row, f) != getattr(report, f) for f in _TRACKED)
    row.state = report.state.value
    row.reason = report.reason
    row.exit_code = report.exit_code
    row.signal = report.signal
    for field in _FILLED:
        if _news(row, report, field):
            setattr(row, field, getattr(report, field))
    if not changed:
        return None
    return StateChange(
        job_pk=row.pk,
        state=row.state,
        reason=row.reason,
        exit_code=row.exit_code,
        signal=row.signal,
        time=now,
    )
