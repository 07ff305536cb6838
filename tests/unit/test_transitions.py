"""What a watcher poll changes, decided with no database (hpcgate.jobs.transitions)."""

from __future__ import annotations

from datetime import UTC, datetime

from hpcgate.jobs.transitions import follow, unlisted_tasks
from hpcgate.model.jobs import JobState
from hpcgate.model.scheduler import SchedulerJob
from hpcgate.store.tables import JobRow

NOW = datetime(2026, 11, 22, 10, tzinfo=UTC)


def job(native_id: str, state: str = "PENDING") -> JobRow:
    return JobRow(
        pk=1, system="hpc", native_id=native_id, owner="alice", state=state, tag="t", spec="{}"
    )


def test_only_a_change_of_state_is_an_event() -> None:
    rows = {"7": job("7")}
    started = follow(rows, [SchedulerJob("7", JobState.RUNNING, node_list="n1")], NOW)
    assert [event.state for _, event in started.events] == ["RUNNING"]
    assert started.updated == [rows["7"]] and rows["7"].node_list == "n1"
    moved = follow(rows, [SchedulerJob("7", JobState.RUNNING, node_list="n2")], NOW)
    assert moved.updated == [rows["7"]] and moved.events == []
    assert follow(rows, [SchedulerJob("7", JobState.RUNNING)], NOW).updated == []


def test_a_new_task_is_owned_like_its_array_and_others_are_ignored() -> None:
    rows = {"7": job("7", "RUNNING")}
    reports = [
        SchedulerJob("7_0", JobState.RUNNING, array_job_id="7"),
        SchedulerJob("8", JobState.RUNNING),
    ]
    writes = follow(rows, reports, NOW)
    (task,) = writes.created
    assert (task.native_id, task.array_job_id, task.owner, task.state) == (
        "7_0",
        "7",
        "alice",
        "RUNNING",
    )
    assert rows["7_0"] is task and [row for row, _ in writes.events] == [task]


def test_tasks_of_known_arrays_missing_from_the_rows_are_looked_up() -> None:
    rows = {"7": job("7", "RUNNING"), "7_1": job("7_1", "RUNNING")}
    reports = [
        SchedulerJob("7_0", JobState.COMPLETED, array_job_id="7"),
        SchedulerJob("7_1", JobState.RUNNING, array_job_id="7"),
        SchedulerJob("8_0", JobState.RUNNING, array_job_id="8"),
    ]
    assert unlisted_tasks(rows, reports) == [("hpc", "7_0")]


def test_the_submit_time_the_gateway_recorded_is_kept() -> None:
    """The 201 of a submit and every later read show one submit time: a scheduler's own
    (another clock, rounded to the second) fills it only where the row has none."""
    recorded = datetime(2026, 11, 22, 9, 59, 59, 123456, tzinfo=UTC)
    rows = {"7": job("7")}
    rows["7"].submit_time = recorded
    reported = SchedulerJob("7", JobState.PENDING, submit_time=NOW)
    assert follow(rows, [reported], NOW).updated == []  # nothing new: no write
    follow(rows, [SchedulerJob("7", JobState.RUNNING, submit_time=NOW)], NOW)
    assert rows["7"].submit_time == recorded and rows["7"].state == "RUNNING"
    unknown = {"8": job("8")}
    follow(unknown, [SchedulerJob("8", JobState.PENDING, submit_time=NOW)], NOW)
    assert unknown["8"].submit_time == NOW
