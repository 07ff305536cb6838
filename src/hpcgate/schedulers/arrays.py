"""Job arrays: a scheduler reports tasks (``ARRAY_TASK``); the array as a whole is
derived from them, so clients can follow either."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import replace

from hpcgate.model.jobs import JobState
from hpcgate.model.scheduler import SchedulerJob

# When an array has ended, its state is the first of these that any task ended in.
_ENDED_PRECEDENCE = (
    JobState.FAILED,
    JobState.OUT_OF_MEMORY,
    JobState.TIMEOUT,
    JobState.NODE_FAIL,
    JobState.PREEMPTED,
    JobState.CANCELLED,
    JobState.COMPLETED,
)
_LIVE_PRECEDENCE = (JobState.RUNNING, JobState.SUSPENDED, JobState.PENDING)


def query_ids(native_ids: Sequence[str]) -> list[str]:
    """The ids to ask about: a task is left out when its whole array is asked for."""
    wanted = set(native_ids)
    return [i for i in native_ids if "_" not in i or i.partition("_")[0] not in wanted]


def with_arrays(requested: Sequence[str], reports: list[SchedulerJob]) -> list[SchedulerJob]:
    """The reports plus one for each requested array that is reported only by its tasks."""
    tasks: dict[str, list[SchedulerJob]] = defaultdict(list)
    for report in reports:
        if report.array_job_id is not None:
            tasks[report.array_job_id].append(report)
    own = {report.native_id for report in reports}
    wholes = [whole(i, tasks[i]) for i in requested if i in tasks and i not in own]
    return reports + wholes


def whole(array_id: str, tasks: list[SchedulerJob]) -> SchedulerJob:
    """The array's state from its tasks: live while any task is, else the worst ending."""
    states = {task.state for task in tasks}
    order = _LIVE_PRECEDENCE if any(not s.terminal for s in states) else _ENDED_PRECEDENCE
    state = next(s for s in order if s in states)
    codes = [task.exit_code for task in tasks if task.exit_code is not None]
    ends = [task.end_time for task in tasks if task.end_time is not None]
    starts = [task.start_time for task in tasks if task.start_time is not None]
    first = min(tasks, key=lambda task: task.native_id)
    return replace(
        first,
        native_id=array_id,
        array_job_id=None,
        state=state,
        reason=next((t.reason for t in tasks if t.state is state and t.reason), None),
        exit_code=max(codes) if state.terminal and codes else None,
        signal=next((t.signal for t in tasks if t.signal), None) if state.terminal else None,
        start_time=min(starts) if starts else None,
        end_time=max(ends) if state.terminal and ends else None,
        stdout=None,
        stderr=None,
    )
