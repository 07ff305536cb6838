"""A job's store row as the API shows it.

The service answers with these and the output follow ends its stream with one, so they
sit below both.
"""

from __future__ import annotations

from hpcgate.model.jobs import Job, JobEvent, JobState
from hpcgate.store.jobs import StateChange
from hpcgate.store.tables import JobRow


def to_job(row: JobRow) -> Job:
    return Job(
        id=row.native_id or "",
        system=row.system,
        owner=row.owner,
        array_job_id=row.array_job_id,
        name=row.name,
        state=JobState(row.state),
        reason=row.reason,
        exit_code=row.exit_code,
        signal=row.signal,
        submit_time=row.submit_time,
        start_time=row.start_time,
        end_time=row.end_time,
        working_directory=row.working_directory,
        stdout=row.stdout,
        stderr=row.stderr,
        time_limit=row.time_limit,
        nodes=row.node_list.split(",") if row.node_list else [],
    )


def to_event(row: JobRow, event: StateChange) -> JobEvent:
    return JobEvent(
        id=event.id,
        job_id=row.native_id or "",
        state=JobState(event.state),
        reason=event.reason,
        exit_code=event.exit_code,
        signal=event.signal,
        time=event.time,
    )
