"""``hpcgate functions``: register Python functions, invoke them with their output streamed,
cancel their invocations and remove them; ``key``: API keys to publish them."""

from __future__ import annotations

import json
import sys
from typing import Annotated, Any

import typer

from hpcgate.client import Error, FunctionEvent, Output
from hpcgate.model.functions import Function
from hpcgate.usercli import keys
from hpcgate.usercli.common import (
    EXIT_CODES,
    Exit,
    InProject,
    Session,
    fail,
    in_project,
    read_text,
    user_command,
)
from hpcgate.usercli.output import note, out, plain_fields, print_json, report, table, when

app = typer.Typer(
    no_args_is_help=True,
    help="Register Python functions that run in a pool of workers on a system, invoke them"
    " with their output streamed, and cancel or remove them.",
)

app.add_typer(keys.app, name="key")

Name = Annotated[str, typer.Argument(help="The function's name (from 'functions ls')")]


@app.command("ls", epilog=EXIT_CODES)
@user_command(system=False)
def list_functions(
    session: Session,
    project: Annotated[
        str | None,
        typer.Option(help="A project's functions (named PROJECT~NAME) instead of yours"),
    ] = None,
) -> None:
    """List your functions and those shared with you."""
    found = session.client.functions.list(project)
    if session.json:
        print_json(found)
        return
    table(
        ("NAME", "OWNER", "SYSTEM", "CALLABLE", "WORKERS", "CREATED"),
        [
            (f.name, f.owner, f.system, f.callable, len(f.workers), when(f.created_at))
            for f in found
        ],
    )


app.command("list", hidden=True, epilog=EXIT_CODES)(list_functions)


@app.command(epilog=EXIT_CODES)
@user_command(system=False)
def show(session: Session, name: Name, project: InProject = None) -> None:
    """Show one function: settings, input schema, and (yours) source and workers."""
    function = session.client.functions.get(in_project(name, project))
    if session.json:
        print_json(function)
        return
    _show(function)


@app.command(epilog=EXIT_CODES)
@user_command()
def register(
    session: Session,
    name: Annotated[str, typer.Argument(help="Its name: a-z first, then a-z, 0-9, _ and -")],
    file: Annotated[
        str | None, typer.Argument(help="The Python source file defining it; - : stdin")
    ] = None,
    entry: Annotated[
        str | None, typer.Option(help="Instead of FILE: 'package.module:callable' on the system")
    ] = None,
    callable: Annotated[
        str | None, typer.Option("--callable", help="The callable's name (default: NAME)")
    ] = None,
    schema: Annotated[
        str | None, typer.Option(help="A JSON Schema file for its input (default: any object)")
    ] = None,
    python: Annotated[str | None, typer.Option(help="The workers' Python (>= 3.9)")] = None,
    concurrency: Annotated[
        str | None, typer.Option(help="threads (default), async or processes")
    ] = None,
    max_concurrency: Annotated[
        int | None, typer.Option(help="Invocations one worker runs at once")
    ] = None,
    min_workers: Annotated[int | None, typer.Option("--min", help="Workers always kept")] = None,
    max_workers: Annotated[int | None, typer.Option("--max", help="Workers at most")] = None,
    idle_seconds: Annotated[
        int | None, typer.Option(help="A worker idle this long stops (never below --min)")
    ] = None,
    time: Annotated[
        str | None, typer.Option("--time", "-t", help="Each worker job's time limit")
    ] = None,
    partition: Annotated[str | None, typer.Option("--partition", "-p")] = None,
    account: Annotated[str | None, typer.Option("--account", "-A")] = None,
    cpus_per_task: Annotated[int | None, typer.Option("--cpus-per-task", "-c")] = None,
    memory: Annotated[str | None, typer.Option("--mem", help="Per node: MiB, or e.g. 4G")] = None,
    gpus: Annotated[int | None, typer.Option()] = None,
    user: Annotated[
        list[str] | None,
        typer.Option("--user", "-u", help="Another user who may invoke it (repeat it; '*': all)"),
    ] = None,
    per_minute: Annotated[
        int | None,
        typer.Option("--rpm", help="Invocations each caller (a user, a key) may start a minute"),
    ] = None,
    concurrent_calls: Annotated[
        int | None,
        typer.Option("--concurrent", help="Unended invocations each caller may have at once"),
    ] = None,
    project: Annotated[
        str | None,
        typer.Option(help="Register it in this project: still run as you, named PROJECT~NAME"),
    ] = None,
) -> None:
    """Register a function of yours on --system.

    Its source FILE (or --entry) is run by workers that start when it is invoked and stop
    when idle."""
    if (file is None) == (entry is None):
        raise fail(Exit.USAGE, "give the source as FILE or --entry (one of them)")
    fields: dict[str, Any] = {
        "name": name,
        "system": session.system,
        "source": None if file is None else read_text(file),
        "entry": entry,
        "callable": callable,
        "input_schema": None if schema is None else _schema(schema),
        "python": python,
        "concurrency": concurrency,
        "max_concurrency": max_concurrency,
        "min_workers": min_workers,
        "max_workers": max_workers,
        "idle_seconds": idle_seconds,
        "time_limit": time,
        "partition": partition,
        "account": account,
        "cpus_per_task": cpus_per_task,
        "memory": memory,
        "gpus": gpus,
        "users": user or None,
        "limits": _limits(per_minute, concurrent_calls),
        "project": project,
    }
    given = {key: value for key, value in fields.items() if value is not None}
    function = session.client.functions.register(**given)
    report(function, session.json, f"function {name} on {function.system}: registered")


@app.command(epilog=EXIT_CODES)
@user_command(system=False)
def invoke(
    session: Session,
    name: Name,
    input: Annotated[
        str, typer.Argument(help="The input: a JSON object; - : read it from stdin")
    ] = "{}",
    encrypt: Annotated[
        bool,
        typer.Option("--encrypt", help="Encrypt the events end to end (the input stays in clear)"),
    ] = False,
    project: InProject = None,
) -> None:
    """Invoke a function, its output streamed.

    Each output on stdout as it comes (a string as a line, anything else as JSON), then the
    result as JSON. An error is printed on stderr (with its traceback, for your own
    function) and the exit status is 1. With --json, each event as one JSON object per
    line. A broken connection is resumed where it stopped; Ctrl-C cancels the invocation.
    With --encrypt, only events sealed by the worker are taken (see the README). With
    --project, the project's function NAME (a member or an owner invokes it)."""
    name = in_project(name, project)
    value = _input(read_text(input) if input == "-" else input)
    for event in session.client.functions.invoke(name, value, encrypt=encrypt):
        _print(event, session.json)
        if isinstance(event, Error):
            raise typer.Exit(int(Exit.FAILED))


@app.command(epilog=EXIT_CODES)
@user_command(system=False)
def cancel(
    session: Session,
    name: Name,
    invocation: Annotated[str, typer.Argument(help="The invocation's id")],
    project: InProject = None,
) -> None:
    """Cancel an invocation (an ended one is left as it is)."""
    found = session.client.functions.cancel(in_project(name, project), invocation)
    report(found, session.json, f"invocation {invocation}: {found.state.value}")


@app.command(epilog=EXIT_CODES)
@user_command(system=False, json=False)
def rm(session: Session, name: Name, project: InProject = None) -> None:
    """Remove your function: its running invocations are cancelled, its workers stop."""
    name = in_project(name, project)
    session.client.functions.delete(name)
    note(f"function {name}: removed")


def _schema(path: str) -> dict[str, Any]:
    found = _json(read_text(path), f"{path}: not JSON")
    if not isinstance(found, dict):
        raise fail(Exit.USAGE, f"{path}: a JSON Schema is an object")
    return found


def _input(text: str) -> dict[str, Any]:
    found = _json(text, "the input is not JSON")
    if not isinstance(found, dict):
        raise fail(Exit.USAGE, "the input must be a JSON object")
    return found


def _json(text: str, what: str) -> Any:
    try:
        return json.loads(text)
    except ValueError as exc:
        raise fail(Exit.USAGE, f"{what}: {exc}") from None


def _print(event: FunctionEvent, json_out: bool) -> None:
    if json_out:
        _line(json.dumps({"seq": event.seq, "type": event.type, **_fields(event)}))
    elif isinstance(event, Output):
        _line(event.data if isinstance(event.data, str) else json.dumps(event.data))
    elif isinstance(event, Error):
        error = event.error
        trace = f"{error.traceback.rstrip()}\n" if error.traceback else ""
        sys.stderr.write(f"{trace}error: {error.type}: {error.message}\n")
    else:
        _line(json.dumps(event.data))


def _fields(event: FunctionEvent) -> dict[str, Any]:
    if isinstance(event, Error):
        return {"error": event.error.model_dump()}
    if isinstance(event, Output) and event.encoding is not None:
        return {"data": event.data, "encoding": event.encoding}
    return {"data": event.data}


def _line(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def _show(function: Function) -> None:
    fields: list[tuple[str, object]] = [
        ("name", function.name),
        ("owner", function.owner),
        ("system", function.system),
        ("callable", function.callable),
        ("entry", function.entry),
        ("created", when(function.created_at)),
        ("problem", function.problem),
        ("input_schema", json.dumps(function.input_schema)),
        *plain_fields(function.settings),
    ]
    table(("field", "value"), fields)
    if function.source is not None:
        out.print()
        out.print(function.source, markup=False, highlight=False)
    if function.workers:
        table(
            ("WORKER", "JOB", "STATE", "NODE", "IN-FLIGHT"),
            [(r.id, r.job_id, r.state.value, r.node, r.in_flight) for r in function.workers],
        )


def _limits(per_minute: int | None, concurrent: int | None) -> dict[str, int] | None:
    """The registration's ``limits``, from the options given (None: none given)."""
    given = {"per_minute": per_minute, "concurrent": concurrent}
    return {key: value for key, value in given.items() if value is not None} or None
