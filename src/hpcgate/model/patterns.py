"""Regular expressions an admin writes that run on values an attacker influences (an OpenID
provider's claims, which self-service profile fields can set).

Python's ``re`` has no timeout, and a backtracking match can take exponential time in the
value's length (``(a+)+$`` on ``aaaa…b``), so bounding the value alone is not enough: 256
characters are ``2**256`` steps to such a pattern. A pattern is therefore refused when it is
read (:func:`backtracking_risk`) if it nests a repeat that can vary in length inside another
repeat, repeats an alternation, refers back to a group, or has more than
:data:`MAX_VARYING_REPEATS` repeats that can vary: what is left backtracks at most
polynomially, ``n**3`` steps for a value of ``n`` characters, and values are bounded (256
characters: a few million steps, tens of milliseconds, at worst).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

#: At most this many repeats whose length can vary (``+``, ``*``, ``?``, ``{1,9}``).
MAX_VARYING_REPEATS = 3

_parser: Any = getattr(re, "_parser")  # noqa: B009 (the standard library's own parser)
_constants: Any = getattr(re, "_constants")  # noqa: B009
_REPEATS = frozenset({_constants.MAX_REPEAT, _constants.MIN_REPEAT, _constants.POSSESSIVE_REPEAT})
_BRANCH, _GROUPREF = _constants.BRANCH, frozenset({_constants.GROUPREF, _constants.GROUPREF_EXISTS})


def backtracking_risk(pattern: str) -> str | None:
    """Why ``pattern`` (which compiles) might backtrack too long on a hostile value, or
    None if it cannot."""
    varying = 0
    for op, av, repeated in _walk(_parser.parse(pattern), False):
        if op in _GROUPREF:
            return "it refers back to a group (\\1, (?P=name), (?(1)...))"
        if op == _BRANCH and repeated:
            return "it repeats an alternation ((a|ab)+): use a character class or no repeat"
        if op in _REPEATS and av[1] > av[0]:
            varying += 1
            if repeated:
                return "it nests a repeat inside another ((a+)+): repeat a fixed-width part"
    if varying > MAX_VARYING_REPEATS:
        return f"it has {varying} repeats that can vary, more than {MAX_VARYING_REPEATS}"
    return None


def _walk(items: Any, repeated: bool) -> Iterator[tuple[Any, Any, bool]]:
    """Every node (op, argument, whether it sits inside a repeat of more than one)."""
    for op, av in items:
        yield op, av, repeated
        for child in _children(op, av):
            inner = repeated or (op in _REPEATS and av[1] > 1)
            yield from _walk(child, inner)


def _children(op: Any, av: Any) -> list[Any]:
    if op in _REPEATS:
        return [av[2]]
    if op == _BRANCH:
        return list(av[1])
    if op == _constants.SUBPATTERN:
        return [av[3]]
    if op in (_constants.ASSERT, _constants.ASSERT_NOT):
        return [av[1]]
    if op == _constants.ATOMIC_GROUP:
        return [av]
    if op == _constants.GROUPREF_EXISTS:
        return [branch for branch in av[1:] if branch is not None]
    return []
