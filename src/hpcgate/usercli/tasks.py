"""``hpcgate tasks``: the long file operations (copy, move, archives) you started."""

from __future__ import annotations

import time
from typing import Annotated

import typer
from rich.markup import escape
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn

from hpcgate.client import Client, WaitTimeout
from hpcgate.model.tasks import Task, TaskState
from hpcgate.usercli.common import EXIT_CODES, Exit, Session, user_command
from hpcgate.usercli.output import details, err, note, print_json, report, say, size, table

app = typer.Typer(no_args_is_help=True, help="Follow and cancel long file operations.")

TaskId = Annotated[str, typer.Argument(help="The task's id (from 'tasks ls')")]
Timeout = Annotated[
    float | None,
    typer.Option(help="Give up waiting after this many seconds (exit 124); the task goes on"),
]
ENDED = {TaskState.COMPLETED: Exit.OK, TaskState.CANCELLED: Exit.CANCELLED}


@app.command("ls", epilog=EXIT_CODES)
@user_command(system=False)
def list_tasks(
    session: Session,
    limit: Annotated[int, typer.Option(min=1, max=1000, help="At most this many")] = 50,
) -> None:
    """List your tasks, newest first."""
    found = session.client.tasks(limit=limit)
    if session.json:
        print_json(found)
        return
    rows = [(t.id, t.kind, t.system, t.state.value, amount(t), t.created_at) for t in found]
    table(("ID", "KIND", "SYSTEM", "STATE", "PROGRESS", "STARTED"), rows)


@app.command(epilog=EXIT_CODES)
@user_command(system=False)
def show(session: Session, task_id: TaskId) -> None:
    """Show one task: what was asked, its progress, its result or error."""
    task = session.client.task(task_id)
    details(task, session.json)


@app.command(epilog=EXIT_CODES)
@user_command(system=False)
def cancel(session: Session, task_id: TaskId) -> None:
    """Cancel a running task (the program it runs is killed)."""
    task = session.client.cancel_task(task_id)
    report(task, session.json, f"task {task.id}: {task.state.value}")


@app.command(epilog=EXIT_CODES)
@user_command(system=False)
def wait(session: Session, task_id: TaskId, timeout: Timeout = None) -> None:
    """Wait for a task to end, with a progress bar; exit 0 only if it completed."""
    client = session.client
    ended(watch(client, client.task(task_id), timeout, session.json), session.json)


def watch(client: Client, task: Task, timeout: float | None, quiet: bool) -> Task:
    """Poll ``task`` until it ends, showing its progress on stderr (on a terminal)."""
    deadline = None if timeout is None else time.monotonic() + timeout
    pause = 0.1
    columns = (TextColumn("{task.description}"), BarColumn(), TaskProgressColumn())
    shown = (*columns, TextColumn("{task.fields[amount]}"))
    with Progress(*shown, console=err, disable=quiet or not err.is_terminal) as bars:
        bar = bars.add_task(escape(f"{task.kind} {task.id[:8]}"), total=None, amount="")
        while task.state == TaskState.RUNNING:
            if deadline is not None and time.monotonic() > deadline:
                raise WaitTimeout(f"task {task.id} still running after {timeout:g} s")
            time.sleep(pause)
            pause = min(2.0, pause * 1.5)
            task = client.task(task.id)
            done, total = task.progress.done, task.progress.total
            bars.update(bar, completed=done, total=total, amount=escape(amount(task)))
    return task


def amount(task: Task) -> str:
    """How far it came: ``3.2M/10.0M``, ``12/40 files``, plus the task's message."""
    progress = task.progress
    if progress.unit == "bytes":
        total = f"/{size(progress.total)}" if progress.total is not None else ""
        done = f"{size(progress.done)}{total}"
    else:
        total = f"/{progress.total}" if progress.total is not None else ""
        done = f"{progress.done}{total} {progress.unit}"
    return " ".join(part for part in (done, progress.message or "") if part)


def ended(task: Task, json_out: bool) -> None:
    """Report the ended task; exit 0 completed, 1 failed, 8 cancelled."""
    code = ENDED.get(task.state, Exit.FAILED)
    if json_out:
        print_json(task)
    elif code == Exit.OK:
        say(f"task {task.id} ({task.kind}) completed")
    else:
        error = task.error or {}
        why = ": ".join(str(error[k]) for k in ("title", "detail") if error.get(k))
        note(f"task {task.id} ({task.kind}) {task.state.value}{': ' + why if why else ''}")
    if code != Exit.OK:
        raise typer.Exit(int(code))
