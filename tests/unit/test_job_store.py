"""The watcher's record() on a real SQLite database: what a watcher poll records."""

from __future__ import annotations

from pathlib import Path

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
