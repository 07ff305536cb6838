"""The watcher's record() on a real SQLite database: what a watcher poll records."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from hpcgate.clock import utcnow
from hpcgate.jobs.rows import to_job
from hpcgate.jobs.transitions import follow
from hpcgate.jobs.watcher import record
from hpcgate.model.jobs import JobState
from hpcgate.model.scheduler import SchedulerJob
from hpcgate.store.db import Database
from hpcgate.store.jobs import JobStore
from hpcgate.store.tables import JobRow


async def test_an_array_task_that_ended_before_its_array_is_recorded_once(
    tmp_path: Path,
) -> None:
    """A task that ended leaves the live rows while its array runs on; the next polls
    report it again (sacct) and must find its row, not insert a second one."""
    database = Database(f"sqlite+aiosqlite:///{tmp_path}/hpcgate.db")
    await database.start()
    try:
        store = JobStore(database)
        array = JobRow(system="hpc", owner="alice", state="PENDING", tag="t1", spec="{}")
        array = await store.add(array)
        await store.mark_submitted(array, "7")
        reports = [
            SchedulerJob("7_0", JobState.COMPLETED, exit_code=0, array_job_id="7"),
            SchedulerJob("7_1", JobState.RUNNING, array_job_id="7"),
        ]
        for poll in range(3):
            live = {row.native_id or "": row for row in await store.live("hpc")}
            assert set(live) == ({"7"} if poll == 0 else {"7", "7_1"})
            changes = await record(store, live, reports)
            assert len(changes) == (2 if poll == 0 else 0)
        task = await store.get("hpc", "7_0")
        assert task is not None and task.state == "COMPLETED" and task.array_job_id == "7"
    finally:
        await database.close()


async def _submitted(store: JobStore, *native_ids: str) -> dict[str, JobRow]:
    for native_id in native_ids:
        row = JobRow(system="hpc", owner="alice", state="PENDING", tag=native_id, spec="{}")
        await store.mark_submitted(await store.add(row), native_id)
    return {row.native_id or "": row for row in await store.live("hpc")}


async def test_numbers_out_of_range_are_recorded_as_unknown(tmp_path: Path) -> None:
    """A scheduler's number too large for the store (a time limit of 10^20 s, an exit code
    of 2^64) is recorded as unknown, and the rest of the report as it is."""
    database = Database(f"sqlite+aiosqlite:///{tmp_path}/hpcgate.db")
    await database.start()
    try:
        store = JobStore(database)
        live = await _submitted(store, "1", "2")
        reports = [
            SchedulerJob("1", JobState.RUNNING, time_limit=10**20, name="big"),
            SchedulerJob("2", JobState.FAILED, exit_code=2**64, signal=-1, time_limit=60),
        ]
        assert len(await record(store, live, reports)) == 2
        first, second = await store.get("hpc", "1"), await store.get("hpc", "2")
        assert first is not None and second is not None
        assert (first.state, first.time_limit, first.name) == ("RUNNING", None, "big")
        assert (second.state, second.exit_code, second.signal) == ("FAILED", None, None)
        assert second.time_limit == 60
    finally:
        await database.close()


async def test_a_row_that_cannot_be_written_does_not_stop_the_others(tmp_path: Path) -> None:
    """The watcher applies each job's update on its own when a poll's transaction fails:
    the other jobs progress and their events are recorded; the bad one is tried again."""
    database = Database(f"sqlite+aiosqlite:///{tmp_path}/hpcgate.db")
    await database.start()
    try:
        store = JobStore(database)
        live = await _submitted(store, "1", "2", "3")
        writes = follow(
            live, [SchedulerJob(n, JobState.COMPLETED, exit_code=0) for n in "123"], utcnow()
        )
        writes.updated[1].time_limit = 2**70  # what no SQL INTEGER holds, however it came
        recorded = await store.record(writes)
        assert sorted(row.native_id or "" for row, _ in recorded) == ["1", "3"]
        assert all(event.id > 0 for _, event in recorded)
        states = {n: getattr(await store.get("hpc", n), "state", None) for n in "123"}
        assert states == {"1": "COMPLETED", "2": "PENDING", "3": "COMPLETED"}
        assert [row.native_id for row in await store.live("hpc")] == ["2"]
    finally:
        await database.close()


async def test_a_row_that_cannot_be_read_does_not_stop_the_others(tmp_path: Path) -> None:
    """A live row the database holds but no one can read back (here a start time that is
    not a date) is skipped by the watcher's read: the other jobs are still followed."""
    database = Database(f"sqlite+aiosqlite:///{tmp_path}/hpcgate.db")
    await database.start()
    try:
        store = JobStore(database)
        await _submitted(store, "1", "2", "3")
        with sqlite3.connect(tmp_path / "hpcgate.db") as raw:
            raw.execute("UPDATE jobs SET start_time = 'not a date' WHERE native_id = '2'")
        live = await JobStore(database).live("hpc")
        assert sorted(row.native_id or "" for row in live) == ["1", "3"]
        done = [SchedulerJob(n, JobState.COMPLETED, exit_code=0) for n in "13"]
        assert len(await record(store, {r.native_id or "": r for r in live}, done)) == 2
    finally:
        await database.close()


def test_a_number_stored_before_the_bounds_reads_as_unknown() -> None:
    """A row an older gateway stored with a time limit of 2^40 s (SQLite took it) still
    renders: the number is unknown, not a failed response."""
    row = JobRow(
        system="hpc", native_id="9", owner="alice", state="FAILED", tag="t", spec="{}",
        time_limit=2**40, exit_code=2**40, signal=-3,
    )  # fmt: skip
    job = to_job(row)
    assert (job.time_limit, job.exit_code, job.signal, job.state) == (None, None, None, "FAILED")
