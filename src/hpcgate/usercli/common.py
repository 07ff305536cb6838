"""What every user command shares: its options, the client, the system it works on, and
how an error becomes one line on stderr and an exit code.

A command is written as ``work(session, its own parameters)`` under :func:`user_command`,
which adds ``--system``, ``--json`` and ``--profile`` to what ``hpcgate ... --help`` shows and
hands the command a :class:`Session`: the client and the system, looked up when the command
first asks for them."""

from __future__ import annotations

import functools
import inspect
import re
import sys
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from enum import IntEnum
from typing import Annotated, Any, ParamSpec, TypeVar

import httpx
import pydantic
import typer

from hpcgate.client import (
    Client,
    GatewayUnreachable,
    NotConfigured,
    RateLimited,
    WaitTimeout,
)
from hpcgate.client import _profile as profiles
from hpcgate.model import errors
from hpcgate.model.errors import Conflict, HpcgateError, IdempotencyInProgress
from hpcgate.model.jobs import PROJECT_NAME_PATTERN
from hpcgate.model.services import PROJECT_SEPARATOR

P = ParamSpec("P")
R = TypeVar("R")
Work = Callable[..., None]
KEYWORD = inspect.Parameter.KEYWORD_ONLY


class Exit(IntEnum):
    """The exit codes of the user commands (see EXIT_CODES)."""

    OK = 0
    FAILED = 1
    USAGE = 2
    NOT_FOUND = 3
    UNAUTHENTICATED = 4
    FORBIDDEN = 5
    UNREACHABLE = 6
    ERROR = 7
    CANCELLED = 8
    TIMEOUT = 9
    WAIT_TIMEOUT = 124
    INTERRUPTED = 130


EXIT_CODES = """\
[bold]Exit codes[/bold]
  0  ok
  1  the job or task failed (FAILED, OUT_OF_MEMORY, NODE_FAIL, PREEMPTED; a failed task)
  2  usage error or invalid input (options, local files, a request the gateway refused)
  3  not found: no such system, job, task, path or service
  4  not authenticated: no URL or token configured; token invalid, expired or revoked
  5  forbidden: the token lacks the scope, or the path is outside your roots
  6  gateway or system unreachable or unavailable: worth retrying later
  7  any other error from the gateway (conflict, storage full, ...)
  8  the job or task was cancelled
  9  the job hit its time limit (TIMEOUT)
  124  --timeout ran out before the job or task ended (it goes on)
  130  interrupted (Ctrl-C)"""

# First match wins, so subclasses come before their bases.
_CODES: tuple[tuple[type[BaseException], Exit], ...] = (
    (WaitTimeout, Exit.WAIT_TIMEOUT),
    (NotConfigured, Exit.UNAUTHENTICATED),
    (GatewayUnreachable, Exit.UNREACHABLE),
    (errors.NotFound, Exit.NOT_FOUND),
    (errors.Unauthenticated, Exit.UNAUTHENTICATED),
    (errors.Forbidden, Exit.FORBIDDEN),
    (errors.BadRequest, Exit.USAGE),
    (errors.Unavailable, Exit.UNREACHABLE),
    (errors.CommandTimeout, Exit.UNREACHABLE),
    (RateLimited, Exit.UNREACHABLE),
    (FileNotFoundError, Exit.USAGE),
    (IsADirectoryError, Exit.USAGE),
    (NotADirectoryError, Exit.USAGE),
    (PermissionError, Exit.USAGE),
    (pydantic.ValidationError, Exit.USAGE),
    (ValueError, Exit.USAGE),
    (httpx.TransportError, Exit.UNREACHABLE),
)

SystemOption = Annotated[
    str | None,
    typer.Option(
        "--system",
        "-s",
        envvar="HPCGATE_SYSTEM",
        show_envvar=True,
        help="The system to work on; default: the only one, if the gateway has one",
    ),
]
JsonOption = Annotated[
    bool, typer.Option("--json", help="Print the result as JSON and nothing else on stdout")
]
ProfileOption = Annotated[
    str | None,
    typer.Option(
        "--profile",
        help="Use this saved profile (from 'hpcgate login'), even if HPCGATE_URL and"
        " HPCGATE_TOKEN are set",
    ),
]


def exit_code(error: BaseException) -> Exit:
    for kind, code in _CODES:
        if isinstance(error, kind):
            return code
    return Exit.ERROR


def message(error: BaseException) -> str:
    """One line: the problem's title and detail."""
    if isinstance(error, HpcgateError):
        title = (error.problem or {}).get("title") or type(error).title
        text = f"{title}: {error.detail}" if error.detail != title else str(title)
    elif isinstance(error, pydantic.ValidationError):
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        text = f"invalid {where}: {first['msg']}" if where else f"invalid: {first['msg']}"
    elif isinstance(error, httpx.TransportError):
        text = f"the connection to the gateway broke: {error}"
    elif isinstance(error, OSError):
        text = f"{error.filename}: {error.strerror}" if error.filename else str(error)
    else:
        text = str(error)
    return " ".join(text.split())


def fail(code: Exit, text: str) -> typer.Exit:
    """Print ``error: text`` on stderr; the exception that ends the command with ``code``."""
    typer.echo(f"error: {' '.join(text.split())}", err=True)
    return typer.Exit(int(code))


@contextmanager
def conflict_hint(hint: str | None) -> Iterator[None]:
    """Add ``hint`` (the option that would have avoided it) to a 409 raised inside."""
    try:
        yield
    except Conflict as error:
        if hint is None or isinstance(error, IdempotencyInProgress):
            raise
        raise fail(exit_code(error), f"{message(error)} ({hint})") from None


def handled(command: Callable[P, R]) -> Callable[P, R]:
    """Run ``command`` turning any error into one line on stderr and its exit code."""

    @functools.wraps(command)
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return command(*args, **kwargs)
        except (KeyboardInterrupt, typer.Abort):
            raise fail(Exit.INTERRUPTED, "interrupted") from None
        except (HpcgateError, OSError, ValueError, httpx.TransportError) as error:
            raise fail(exit_code(error), message(error)) from None

    return run


@contextmanager
def connect(profile: str | None) -> Iterator[Client]:
    """A client for the gateway: a ``--profile`` given is used as it is; else the SDK's
    order, ``HPCGATE_URL`` and ``HPCGATE_TOKEN`` then the current profile."""
    try:
        saved = profiles.load(profile) if profile else profiles.Profile(None, None)
    except (KeyError, ValueError) as error:
        raise NotConfigured(str(error.args[0] if error.args else error)) from None
    if profile and not (saved.url and saved.token):
        raise NotConfigured(f"profile {profile!r} has no URL or token: run 'hpcgate login'")
    with Client(saved.url, saved.token, profile=profile) as client:
        yield client


def pick_system(client: Client, given: str | None) -> str:
    """``--system`` (or ``HPCGATE_SYSTEM``), else the gateway's only system."""
    if given:
        return given
    names = [system.name for system in client.systems()]
    if len(names) == 1:
        return names[0]
    if not names:
        raise fail(Exit.NOT_FOUND, "the gateway has no systems")
    raise fail(
        Exit.USAGE,
        f"the gateway has {len(names)} systems ({', '.join(names)}): pass --system NAME"
        " or set HPCGATE_SYSTEM",
    )


class Session:
    """What a user command works with: the client (connected when first used, closed when
    the command ends), the system (``--system``, else the gateway's only one, asked for when
    first used) and whether to print JSON. So a command's own checks of its options and
    local files come before anything is asked of the gateway."""

    def __init__(
        self, stack: ExitStack, profile: str | None, system: str | None, json: bool
    ) -> None:
        self.json = json
        self._stack = stack
        self._profile = profile
        self._system = system

    @functools.cached_property
    def client(self) -> Client:
        return self._stack.enter_context(connect(self._profile))

    @functools.cached_property
    def system(self) -> str:
        return pick_system(self.client, self._system)


def user_command(*, system: bool = True, json: bool = True) -> Callable[[Work], Work]:
    """Make ``work(session, ...)`` a command: its own parameters, then ``--system`` (unless
    ``system`` is false), ``--json`` (unless ``json`` is false) and ``--profile``; errors as
    :func:`handled` says."""

    def wrap(work: Work) -> Work:
        def run(**given: Any) -> None:
            profile, name = given.pop("profile"), given.pop("system", None)
            json_out = given.pop("json_out", False)
            with ExitStack() as stack:
                work(Session(stack, profile, name, json_out), **given)

        functools.update_wrapper(run, work)
        run.__signature__ = _signature(work, system, json)  # type: ignore[attr-defined]
        return handled(run)

    return wrap


def _signature(work: Work, system: bool, json: bool) -> inspect.Signature:
    """``work``'s parameters after the session, between the shared options (all keyword-only:
    typer passes them so, and their order is only that of ``--help``)."""
    after_session = list(inspect.signature(work, eval_str=True).parameters.values())[1:]
    own = [parameter.replace(kind=KEYWORD) for parameter in after_session]
    first = [_option("system", SystemOption, None)] if system else []
    last = [_option("json_out", JsonOption, False)] if json else []
    return inspect.Signature([*first, *own, *last, _option("profile", ProfileOption, None)])


def _option(name: str, annotation: Any, default: Any) -> inspect.Parameter:
    return inspect.Parameter(name, KEYWORD, annotation=annotation, default=default)


def read_text(path: str) -> str:
    """A local text file, or standard input for ``-``."""
    if path == "-":
        return sys.stdin.read()
    try:
        with open(path, encoding="utf-8") as source:
            return source.read()
    except UnicodeDecodeError:
        raise fail(Exit.USAGE, f"{path} is not UTF-8 text") from None


InProject = Annotated[
    str | None,
    typer.Option("--project", help="The name is this project's (the same as giving PROJECT~NAME)"),
]


def in_project(name: str, project: str | None) -> str:
    """``name`` as the gateway addresses it: ``PROJECT~NAME`` with ``--project``, which
    takes a plain name (a usage error, changing nothing, otherwise)."""
    if project is None:
        return name
    if re.fullmatch(PROJECT_NAME_PATTERN, project) is None:
        raise fail(Exit.USAGE, f"--project: {project!r} is no project's name")
    if PROJECT_SEPARATOR in name or ":" in name:
        raise fail(Exit.USAGE, f"--project {project} takes a plain name, not {name!r}")
    return f"{project}{PROJECT_SEPARATOR}{name}"
