"""Job templates of the web interface (``[[ui.job_templates]]``): an admin's script with
``{param}`` slots and typed, bounded parameters, and the job a user's values make of it.

A value never becomes script text. Each slot is replaced by ``"${HPCGATE_PARAM_NAME}"`` (a
double-quoted expansion: one shell word, never split, globbed or parsed again) and the
checked value travels in the job's environment under that name. So a value of
``$(rm -rf ~)`` or ``'; reboot`` is only ever data, wherever its slot stands. A slot is
``{name}`` for a declared parameter's name, not preceded by ``$`` (``${HOME}``, awk's
``{print}`` and brace expansions are left as they are); it stands for one word, so it
belongs outside quotes (in a here-document its quotes show, around the value).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from enum import StrEnum
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

ENV_PREFIX = "HPCGATE_PARAM_"
SCRIPT_MAX = 64 * 1024
PARAMETERS_MAX = 32
TEMPLATES_MAX = 100
VALUE_MAX = 4096
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")

ParameterName = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,31}$")]
TemplateName = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9-]{0,39}$")]
Choice = Annotated[str, StringConstraints(min_length=1, max_length=200)]


class ParameterType(StrEnum):
    STRING = "string"
    INTEGER = "integer"
    NUMBER = "number"
    CHOICE = "choice"


class TemplateParameter(BaseModel):
    """One parameter: its type and bounds, checked on every value a user gives."""

    model_config = ConfigDict(extra="forbid")

    name: ParameterName = Field(description="Its slot is {name}; letters, digits, '_'")
    label: str = Field("", max_length=200, description="What the form calls it (default: name)")
    type: ParameterType = ParameterType.STRING
    default: str = Field("", max_length=VALUE_MAX, description="The form's initial value")
    minimum: float | None = Field(None, description="integer, number: the least (required)")
    maximum: float | None = Field(None, description="integer, number: the most (required)")
    max_length: int = Field(256, ge=1, le=VALUE_MAX, description="string: the most characters")
    choices: list[Choice] = Field(default_factory=list, max_length=100, description="choice")

    @model_validator(mode="after")
    def _bounded(self) -> TemplateParameter:
        numeric = self.type in (ParameterType.INTEGER, ParameterType.NUMBER)
        if numeric and (self.minimum is None or self.maximum is None):
            raise ValueError(f"parameter {self.name!r}: a number needs minimum and maximum")
        if numeric and not (math.isfinite(self.minimum or 0) and math.isfinite(self.maximum or 0)):
            raise ValueError(f"parameter {self.name!r}: finite bounds only")
        if numeric and (self.minimum or 0) > (self.maximum or 0):
            raise ValueError(f"parameter {self.name!r}: minimum above maximum")
        if (self.type == ParameterType.CHOICE) != bool(self.choices):
            raise ValueError(f"parameter {self.name!r}: choices go with type 'choice' only")
        return self

    def checked(self, raw: str) -> str:
        """``raw`` as the job will see it; ValueError saying why it is refused."""
        label = self.label or self.name
        if self.type == ParameterType.CHOICE:
            if raw not in self.choices:
                raise ValueError(f"{label}: one of {', '.join(self.choices)}")
            return raw
        if self.type == ParameterType.STRING:
            if len(raw) > self.max_length or _CONTROL.search(raw):
                raise ValueError(f"{label}: at most {self.max_length} characters, one line")
            return raw
        return self._number(raw.strip(), label)

    def _number(self, raw: str, label: str) -> str:
        low, high = self.minimum or 0.0, self.maximum or 0.0
        try:
            if len(raw) > 40:
                raise ValueError
            value: float = int(raw) if self.type == ParameterType.INTEGER else float(raw)
        except ValueError:
            raise ValueError(
                f"{label}: a{'n integer' if self.type == 'integer' else ' number'}"
            ) from None
        if not (math.isfinite(value) and low <= value <= high):
            raise ValueError(f"{label}: from {_plain(low)} to {_plain(high)}")
        return str(value)


def _plain(number: float) -> str:
    return str(int(number)) if number.is_integer() else str(number)


class JobTemplate(BaseModel):
    """One ``[[ui.job_templates]]`` entry."""

    model_config = ConfigDict(extra="forbid")

    name: TemplateName
    description: str = Field("", max_length=2000)
    script: str = Field(min_length=2, max_length=SCRIPT_MAX, description="Starts with '#!'")
    parameters: list[TemplateParameter] = Field(default_factory=list, max_length=PARAMETERS_MAX)

    @model_validator(mode="after")
    def _slots(self) -> JobTemplate:
        if not self.script.startswith("#!"):
            raise ValueError(f"template {self.name!r}: the script must start with '#!'")
        names = [p.name for p in self.parameters]
        if len(set(names)) != len(names):
            raise ValueError(f"template {self.name!r}: a parameter named twice")
        unused = [name for name in names if not _slot(name).search(self.script)]
        if unused:
            raise ValueError(f"template {self.name!r}: no slot for {', '.join(unused)}")
        return self

    def render(self, given: Mapping[str, str]) -> tuple[str, dict[str, str]]:
        """The job's script and environment for the values ``given``; ValueError naming
        every value refused."""
        environment: dict[str, str] = {}
        refused: list[str] = []
        script = self.script
        for parameter in self.parameters:
            variable = ENV_PREFIX + parameter.name.upper()
            try:
                environment[variable] = parameter.checked(given.get(parameter.name, ""))
            except ValueError as exc:
                refused.append(str(exc))
            script = _slot(parameter.name).sub(f'"${{{variable}}}"', script)
        if refused:
            raise ValueError("; ".join(refused))
        return script, environment


def _slot(name: str) -> re.Pattern[str]:
    return re.compile(r"(?<!\$)\{" + re.escape(name) + r"\}")


#: Lower-case DNS labels, at least two (``apps.example.org``, ``apps.localhost``).
APPS_DOMAIN_PATTERN = r"^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$"


class UiConfig(BaseModel):
    """The ``[ui]`` table: what the web interface offers beyond the API."""

    model_config = ConfigDict(extra="forbid")

    job_templates: list[JobTemplate] = Field(
        default_factory=list,
        max_length=TEMPLATES_MAX,
        description="Scripts with typed parameters, offered on the job form",
    )
    apps_domain: str | None = Field(
        None,
        pattern=APPS_DOMAIN_PATTERN,
        max_length=200,
        description=(
            "A domain whose every name reaches this gateway (wildcard DNS and certificate):"
            " each service opened from the web interface gets an origin of its own under it,"
            " NAME--USER.APPS_DOMAIN (a declared one NAME.APPS_DOMAIN). Unset: a service opens"
            " sandboxed under /ui/open/NAME/, GET only"
        ),
    )

    @model_validator(mode="after")
    def _unique(self) -> UiConfig:
        names = [t.name for t in self.job_templates]
        if len(set(names)) != len(names):
            raise ValueError("[[ui.job_templates]]: a name used twice")
        return self
