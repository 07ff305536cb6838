"""Job templates: a value reaches the job as an environment variable only, never as script
text; every parameter checked and bounded; a template that cannot work refused at load."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from pydantic import ValidationError

from hpcgate.jobtemplates import JobTemplate, UiConfig

SCRIPT = (
    "#!/bin/bash\nprintf '%s|' {text} {steps} {mode}\ncat <<EOF\n{text}\nEOF\n"
    "echo ${HOME:+home} | awk '{print}'\n"
)
PARAMETERS = [
    {"name": "text", "max_length": 64},
    {"name": "steps", "type": "integer", "minimum": 1, "maximum": 10},
    {"name": "mode", "type": "choice", "choices": ["fast", "exact"]},
]


def _template() -> JobTemplate:
    return JobTemplate(name="demo", script=SCRIPT, parameters=PARAMETERS)


def test_a_hostile_value_is_only_ever_data_when_the_script_runs(tmp_path: Path) -> None:
    hostile = "$(touch pwned) `id` '; echo x"
    script, env = _template().render({"text": hostile, "steps": "3", "mode": "fast"})
    assert hostile not in script and "{text}" not in script
    assert env == {
        "HPCGATE_PARAM_TEXT": hostile,
        "HPCGATE_PARAM_STEPS": "3",
        "HPCGATE_PARAM_MODE": "fast",
    }
    ran = subprocess.run(
        ["bash", "-c", script],
        env={**env, "HOME": "/nowhere"},
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    # One word each; in the here-document the slot's quotes show, its value still inert;
    # ${HOME...} and awk's {print} are no slots.
    assert ran.stdout == f'{hostile}|3|fast|"{hostile}"\nhome\n'
    assert list(tmp_path.iterdir()) == []  # nothing ran: no file 'pwned'


@pytest.mark.parametrize(
    ("values", "refused"),
    [
        ({"text": "x" * 65, "steps": "3", "mode": "fast"}, "at most 64"),
        ({"text": "a\nb", "steps": "3", "mode": "fast"}, "one line"),
        ({"text": "ok", "steps": "11", "mode": "fast"}, "from 1 to 10"),
        ({"text": "ok", "steps": "2.5", "mode": "fast"}, "an integer"),
        ({"text": "ok", "steps": "1" * 50, "mode": "fast"}, "an integer"),
        ({"text": "ok", "steps": "3", "mode": "slow"}, "one of fast, exact"),
    ],
)
def test_a_value_out_of_bounds_is_refused(values: dict[str, str], refused: str) -> None:
    with pytest.raises(ValueError, match=refused):
        _template().render(values)


@pytest.mark.parametrize(
    "parameters",
    [
        [{"name": "text"}, {"name": "text"}],  # twice
        [{"name": "unused"}],  # no slot
        [{"name": "text", "type": "number"}],  # unbounded
        [{"name": "text", "type": "number", "minimum": 0, "maximum": float("inf")}],
        [{"name": "text", "type": "choice"}],  # no choices
        [{"name": "Text"}],  # not a name
    ],
)
def test_a_template_that_cannot_work_is_refused_at_load(parameters: list[object]) -> None:
    with pytest.raises(ValidationError):
        JobTemplate(name="bad", script="#!/bin/sh\necho {text}\n", parameters=parameters)


def test_two_templates_of_one_name_are_refused() -> None:
    one = {"name": "same", "script": "#!/bin/sh\ntrue\n"}
    with pytest.raises(ValidationError, match="used twice"):
        UiConfig.model_validate({"job_templates": [one, one]})
