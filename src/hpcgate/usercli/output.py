"""How the user commands print: rich tables for people, ``--json`` for scripts, progress
bars on stderr."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from pydantic import BaseModel
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.table import Table

out = Console(highlight=False)
if not out.is_terminal:  # piped: one row per line, never wrapped at 80 columns
    out = Console(highlight=False, width=1 << 16)
err = Console(stderr=True, highlight=False)
Report = Callable[[int, int | None], None]


def plain(value: Any) -> Any:
    """Models (also inside lists and dicts) as JSON-ready data."""
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, list | tuple):
        return [plain(item) for item in value]
    if isinstance(value, dict):
        return {key: plain(item) for key, item in value.items()}
    return value


def print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(plain(value), indent=2) + "\n")
    sys.stdout.flush()


def report(value: Any, json_out: bool, line: str) -> None:
    """``value`` as JSON for scripts, or ``line`` for people."""
    if json_out:
        print_json(value)
    else:
        say(line)


def say(text: str) -> None:
    """A line for people on stdout (never used with --json)."""
    out.print(escape(text), soft_wrap=True)


def note(text: str) -> None:
    """A line for people on stderr, where it does not mix with data on stdout."""
    err.print(escape(text), soft_wrap=True)


def table(columns: Sequence[str], rows: Iterable[Sequence[object]]) -> None:
    """Columns of text; the first (an id or name) is never cut."""
    cells = [[escape(cell_text(cell)) for cell in row] for row in rows]
    grid = Table(box=None, header_style="bold", pad_edge=False)
    first = max((len(row[0]) for row in cells), default=0)
    for index, name in enumerate(columns):
        grid.add_column(name, overflow="fold", min_width=first if index == 0 else None)
    for row in cells:
        grid.add_row(*row)
    out.print(grid)


def details(model: BaseModel, json_out: bool = False) -> None:
    """One model as field/value lines, or as JSON for scripts."""
    if json_out:
        print_json(model)
    else:
        table(("field", "value"), plain_fields(model))


def plain_fields(model: BaseModel) -> list[tuple[str, object]]:
    return [(name, getattr(model, name)) for name in type(model).model_fields]


def cell_text(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, datetime):
        return when(value)
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list | tuple):
        return ",".join(cell_text(item) for item in value) or "-"
    if isinstance(value, dict):
        return json.dumps(value) if value else "-"
    if isinstance(value, BaseModel):  # e.g. a task's progress: JSON, not a Python repr
        return json.dumps(plain(value))
    return str(value)


def when(moment: datetime | float | None) -> str:
    if moment is None:
        return "-"
    if not isinstance(moment, datetime):
        moment = datetime.fromtimestamp(moment).astimezone()
    return f"{moment.astimezone():%Y-%m-%d %H:%M:%S}"


def size(count: int | None) -> str:
    """Bytes as people read them: 512, 4.0K, 3.2M, 1.5G."""
    if count is None:
        return "-"
    value = float(count)
    for unit in ("", "K", "M", "G", "T"):
        if value < 1024 or unit == "T":
            return f"{count}" if unit == "" else f"{value:.1f}{unit}"
        value /= 1024
    return str(count)  # not reached


@contextmanager
def transfer(label: str, quiet: bool) -> Iterator[Report]:
    """A progress bar on stderr for a transfer, fed by the SDK's ``progress(done, total)``."""
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(binary_units=True),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=err, disable=quiet or not err.is_terminal) as bars:
        task = bars.add_task(escape(label), total=None)

        def report(done: int, total: int | None) -> None:
            bars.update(task, completed=done, total=total)

        yield report


@contextmanager
def busy(text: str, quiet: bool) -> Iterator[None]:
    """A spinner on stderr while waiting (only on a terminal)."""
    if quiet or not err.is_terminal:
        yield
        return
    with err.status(escape(text)):
        yield
