"""The state of a whole job array, derived from its tasks."""

from __future__ import annotations

from datetime import UTC, datetime

from hpcgate.model.jobs import JobState
from hpcgate.model.scheduler import SchedulerJob
from hpcgate.schedulers.arrays import query_ids, whole, with_arrays

T0 = datetime(2026, 11, 22, 10, tzinfo=UTC)
T1 = datetime(2026, 11, 22, 11, tzinfo=UTC)


def task(index: int, state: JobState, code: int | None = None, **more: object) -> SchedulerJob:
    return SchedulerJob(
        native_id=f"9_{index}",
        array_job_id="9",
        state=state,
        exit_code=code,
        **more,  # type: ignore[arg-type]
    )


def test_live_while_any_task_is() -> None:
    tasks = [task(0, JobState.COMPLETED, 0), task(1, JobState.PENDING), task(2, JobState.RUNNING)]
    array = whole("9", tasks)
    assert (array.native_id, array.state, array.exit_code) == ("9", JobState.RUNNING, None)
    assert whole("9", tasks[:2]).state is JobState.PENDING


def test_ended_takes_the_worst_task() -> None:
    tasks = [
        task(0, JobState.COMPLETED, 0, start_time=T0, end_time=T0),
        task(1, JobState.FAILED, 3, start_time=T1, end_time=T1),
        task(2, JobState.CANCELLED, None),
    ]
    array = whole("9", tasks)
    assert (array.state, array.exit_code) == (JobState.FAILED, 3)
    assert (array.start_time, array.end_time) == (T0, T1)
    assert array.array_job_id is None and array.stdout is None
    assert whole("9", [tasks[0], tasks[2]]).state is JobState.CANCELLED
    assert whole("9", [tasks[0]]).state is JobState.COMPLETED


def test_with_arrays_adds_only_requested_arrays_without_own_report() -> None:
    tasks = [task(0, JobState.RUNNING)]
    plain = SchedulerJob(native_id="5", state=JobState.PENDING)
    reports = with_arrays(["9", "5"], [*tasks, plain])
    assert [r.native_id for r in reports] == ["9_0", "5", "9"]
    assert with_arrays(["5"], [*tasks, plain]) == [*tasks, plain]


def test_query_ids_drop_tasks_of_listed_arrays() -> None:
    assert query_ids(["9", "9_0", "9_1", "8_3", "7"]) == ["9", "8_3", "7"]
