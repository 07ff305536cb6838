"""An admin's mapping rules (``[[auth.oidc.NAME.users]]`` and ``.groups``), compiled once.

User rules are tried in order and the first that matches names the hpcgate user and,
optionally, the Unix account; when there are rules and none matches, the token is refused
(403): a federated identity nobody mapped lands on no account by default. Group rules all
apply: each group the token holds adds its scopes and projects.

Bounded: a rule's regular expression is at most 256 characters (checked, and compiled, when
the configuration is read), and only claim values of at most 256 characters are tested.
``re`` has no timeout, so the value's bound is what bounds a match's time, and a pattern
whose backtracking could outgrow it (nested or alternating repeats, back-references) is
refused at load (:mod:`hpcgate.model.patterns`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from hpcgate.config import ACCOUNT_NAME_PATTERN, TEMPLATE_FIELD, OidcIssuer, UserRule
from hpcgate.model.errors import Forbidden
from hpcgate.model.principal import Role, Scope
from hpcgate.model.tokens import USER_NAME_PATTERN

MAX_VALUE_CHARS = 256
MAX_GROUPS = 1024  # a token naming more groups has the first ones tested only
_USER = re.compile(USER_NAME_PATTERN)
_ACCOUNT = re.compile(ACCOUNT_NAME_PATTERN)


@dataclass(frozen=True, slots=True)
class Granted:
    """What a token's groups grant: scopes, projects, and roles other than ``member``."""

    scopes: frozenset[Scope]
    projects: frozenset[str]
    roles: frozenset[tuple[str, Role]]


@dataclass(frozen=True, slots=True)
class _UserRule:
    rule: UserRule
    pattern: re.Pattern[str] | None

    def match(self, value: str) -> tuple[str, ...] | None:
        """The groups the value gives the templates, or None if the rule does not match."""
        if self.pattern is None:
            return () if value == self.rule.equals else None
        found = self.pattern.fullmatch(value)
        return None if found is None else tuple(g or "" for g in found.groups())


def _filled(template: str, groups: tuple[str, ...]) -> str:
    return TEMPLATE_FIELD.sub(lambda field: groups[int(field[1]) - 1], template)


class Rules:
    """A provider's rules, compiled."""

    def __init__(self, config: OidcIssuer) -> None:
        self.users = [
            _UserRule(rule, None if rule.match is None else re.compile(rule.match))
            for rule in config.users
        ]
        self._groups = config.groups

    def user(self, claims: dict[str, Any]) -> tuple[str, str | None]:
        """The hpcgate user and Unix account (None: as ``[users]`` says) the first
        matching rule names; Forbidden if none matches or it makes no valid name."""
        for compiled in self.users:
            value = claims.get(compiled.rule.claim)
            if not isinstance(value, str) or len(value) > MAX_VALUE_CHARS:
                continue
            groups = compiled.match(value)
            if groups is not None:
                return _names(compiled.rule, groups)
        raise Forbidden("no identity mapping rule of this gateway matches the token")

    def groups(self, claims: dict[str, Any]) -> Granted:
        """The scopes, projects and roles other than ``member`` the token's groups grant."""
        scopes: set[Scope] = set()
        projects: set[str] = set()
        roles: set[tuple[str, Role]] = set()
        for rule in self._groups:
            if rule.value in _values(claims.get(rule.claim)):
                scopes.update(rule.scopes)
                projects.update(rule.projects)
                if rule.role is not Role.MEMBER:
                    roles.update((project, rule.role) for project in rule.projects)
        return Granted(frozenset(scopes), frozenset(projects), frozenset(roles))


def _names(rule: UserRule, groups: tuple[str, ...]) -> tuple[str, str | None]:
    name = _filled(rule.user, groups)
    if not _USER.fullmatch(name):
        raise Forbidden(f"the mapping rule on {rule.claim!r} makes no valid hpcgate user name")
    account = None if rule.account is None else _filled(rule.account, groups)
    if account is not None and not _ACCOUNT.fullmatch(account):
        raise Forbidden(f"the mapping rule on {rule.claim!r} makes no valid Unix account name")
    return name, account


def _values(claim: object) -> list[str]:
    """A group claim's strings: one string, or a list of them (other items ignored)."""
    if isinstance(claim, str):
        return [claim]
    if isinstance(claim, list):
        return [v for v in claim[:MAX_GROUPS] if isinstance(v, str)]
    return []
