"""``#SBATCH`` directives read from a batch script's leading comment block.

As in sbatch, directives are read from lines starting with ``#SBATCH`` up to the first line
that is neither blank nor a comment. Values may be quoted as in a shell and a word starting
with ``#`` starts a trailing comment. Understood (the last occurrence wins):

``-J/--job-name``, ``-t/--time``, ``-o/--output``, ``-e/--error``, ``-D/--chdir``,
``-d/--dependency``, each as ``--opt=value``, ``--opt value``, ``-J value`` or ``-Jvalue``.

Every other directive is ignored, so a script written for Slurm runs unchanged.
"""

from __future__ import annotations

import shlex
from collections.abc import Iterator
from dataclasses import dataclass

from hpcgate.embedded.errors import UserError
from hpcgate.embedded.timefmt import parse_time

_PREFIX = "#SBATCH"
_SHORT = {
    "J": "job-name",
    "t": "time",
    "o": "output",
    "e": "error",
    "D": "chdir",
    "d": "dependency",
}
_KNOWN = frozenset(_SHORT.values())
# Slurm options that take no value (or only an optional ``=value``): the word after them is
# not their value. Any other unknown option swallows the next word unless it looks like an
# option, which keeps the following directives on the same line readable.
_FLAGS = frozenset(
    {
        "H", "O", "Q", "s", "v", "W", "h", "exclusive", "requeue", "no-requeue", "hold",
        "overcommit", "contiguous", "spread-job", "use-min-nodes", "parsable", "wait",
        "test-only", "verbose", "quiet", "oversubscribe", "ignore-pbs", "no-kill",
        "get-user-env", "reboot", "help", "usage",
    }
)  # fmt: skip


@dataclass(frozen=True)
class Directives:
    """The understood directives of one script; None where a directive was absent."""

    name: str | None = None
    time_limit: int | None = None
    output: str | None = None
    error: str | None = None
    chdir: str | None = None
    dependency: str | None = None


def parse_directives(script: str) -> Directives:
    """The understood ``#SBATCH`` directives of ``script`` (see the module docstring)."""
    values: dict[str, str] = {}
    for number, text in directive_lines(script):
        for option, value in _options(_words(text, number)):
            if option in _KNOWN:
                values[option] = _required(option, value, number)
    limit = values.get("time")
    return Directives(
        name=values.get("job-name"),
        time_limit=None if limit is None else parse_time(limit),
        output=values.get("output"),
        error=values.get("error"),
        chdir=values.get("chdir"),
        dependency=values.get("dependency"),
    )


def directive_lines(script: str) -> Iterator[tuple[int, str]]:
    """(line number, text after ``#SBATCH``) for each directive of the leading comment block."""
    for number, line in enumerate(script.splitlines(), start=1):
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            return
        rest = line[len(_PREFIX) :]
        if line.startswith(_PREFIX) and (not rest or rest[0].isspace()):
            yield number, rest


def _words(text: str, number: int) -> list[str]:
    try:
        words = shlex.split(text)
    except ValueError as exc:
        raise UserError(f"malformed #SBATCH directive on line {number}: {exc}") from None
    comment = next((i for i, word in enumerate(words) if word.startswith("#")), len(words))
    return words[:comment]


def _options(words: list[str]) -> Iterator[tuple[str, str | None]]:
    """(long option name, value or None) for each option in ``words``."""
    index = 0
    while index < len(words):
        option, value, takes = _split(words[index])
        following = words[index + 1] if index + 1 < len(words) else None
        if value is None and takes and following is not None and not following.startswith("-"):
            value, index = following, index + 1
        index += 1
        if option:
            yield option, value


def _split(word: str) -> tuple[str, str | None, bool]:
    """(option, attached value, whether it may take the next word) of one word."""
    if word.startswith("--"):
        name, equals, value = word[2:].partition("=")
        return name, value if equals else None, name not in _FLAGS
    if word.startswith("-") and len(word) > 1:
        letter, attached = word[1], word[2:]
        name = _SHORT.get(letter, letter)
        return name, attached or None, letter not in _FLAGS
    return "", None, False  # a stray word: ignored like the directive it belongs to


def _required(option: str, value: str | None, number: int) -> str:
    if value is None or not value.strip():
        raise UserError(f"#SBATCH --{option} on line {number} needs a value")
    return value.strip()
