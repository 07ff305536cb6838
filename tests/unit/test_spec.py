from __future__ import annotations

import pytest
from pydantic import ValidationError

from hpcgate.model.errors import UnsupportedField
from hpcgate.model.jobs import JobSpec, JobState
from hpcgate.schedulers.embedded import EmbeddedScheduler


def test_time_limit_and_memory_normalise() -> None:
    spec = JobSpec(script="#!/bin/sh", time_limit="1:00:00", memory="2G")
    assert (spec.time_limit, spec.memory) == (3600, 2048)
    assert JobSpec(script="#!/bin/sh", time_limit=90).time_limit == 90


def test_given_fields_ignore_empty_defaults() -> None:
    spec = JobSpec(script="#!/bin/sh", environment={}, dependencies=[], name="x")
    assert spec.given_fields() == {"script", "name"}


@pytest.mark.parametrize(
    "fields",
    [
        {},
        {"script": "a", "script_path": "/b"},
        {"script": "a", "name": "two\nlines"},
        {"script": "a", "array": "1-"},
        {"script": "a", "environment": {"1X": "v"}},
        {"script": "a", "dependencies": ["afterok:"]},
        {"script": "a", "gpus": -1},
    ],
)
def test_invalid_specs(fields: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        JobSpec.model_validate(fields)


def test_array_and_dependency_forms() -> None:
    spec = JobSpec(script="#!/bin/sh", array="0-9:2,20%4", dependencies=["afterany:3:4_1"])
    assert spec.array == "0-9:2,20%4"


def test_terminal_states() -> None:
    assert {s for s in JobState if not s.terminal} == {
        JobState.PENDING,
        JobState.RUNNING,
        JobState.SUSPENDED,
    }


def test_embedded_accepts_trivial_resources_and_refuses_real_ones(tmp_path: object) -> None:
    scheduler = EmbeddedScheduler(tmp_path, slots=1)  # type: ignore[arg-type]
    scheduler.check(JobSpec(script="#!/bin/sh", nodes=1, ntasks=1, cpus_per_task=1))
    with pytest.raises(UnsupportedField) as caught:
        scheduler.check(JobSpec(script="#!/bin/sh", nodes=2, memory=100, array="1-2"))
    assert caught.value.extra["fields"] == ["array", "memory", "nodes"]
