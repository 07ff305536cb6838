"""A job's store row as the API shows it.

The service answers with these and the output follow ends its stream with one, so they
sit below both. A number stored before the gateway bounded them (a time limit of 2^40 s)
reads as unknown, so an old row never makes a response fail.
"""

from __future__ import annotations

from hpcgate.model.bounds import INT32_MAX, INT32_MIN, SECONDS_MAX, reported
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
        exit_code=_exit_code(row.exit_code),
        signal=_signal(row.signal),
        submit_time=row.submit_time,
        start_time=row.start_time,
        end_time=row.end_time,
        working_directory=row.working_directory,
        stdout=row.stdout,
        stderr=row.stderr,
        time_limit=reported(row.time_limit, 0, SECONDS_MAX, "a stored time limit"),
        nodes=row.node_list.split(",") if row.node_list else [],
        project=row.project,
    )


def to_event(row: JobRow, event: StateChange) -> JobEvent:
    return JobEvent(
        id=event.id,
        job_id=row.native_id or "",
        state=JobState(event.state),
        reason=event.reason,
        exit_code=_exit_code(event.exit_code),
        signal=_signal(event.signal),
        time=event.time,
    )


def _exit_code(value: int | None) -> int | None:
    return reported(value, INT32_MIN, INT32_MAX, "a stored exit code")


def _signal(value: int | None) -> int | None:
    return reported(value, 0, INT32_MAX, "a stored signal")
