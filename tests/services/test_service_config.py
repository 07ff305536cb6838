"""``[services.NAME]`` tables and the ``service_*`` settings: what the gateway refuses to
start with."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from hpcgate.config import Settings

SCRIPT = "#!/bin/sh\nexec server\n"


def _settings(tmp_path: Path, **extra: Any) -> Settings:
    return Settings(home=tmp_path, **extra)


def test_a_declared_service_reads_with_its_defaults(tmp_path: Path) -> None:
    settings = _settings(
        tmp_path, services={"llm": {"system": "local", "script": SCRIPT, "time_limit": "1:00:00"}}
    )
    service = settings.services["llm"]
    assert (service.min_replicas, service.max_replicas, service.users) == (0, 1, [])
    assert (service.time_limit, service.run_as, service.health_path) == (3600, None, "/health")
    assert settings.service_ports == (20000, 32767)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"services": {"llm": {"system": "gone", "script": SCRIPT}}}, "no system 'gone'"),
        ({"services": {"LLM": {"system": "local", "script": SCRIPT}}}, "pattern"),
        ({"services": {"llm": {"system": "local", "script": "exec x"}}}, "'#!'"),
        (
            {"services": {"llm": {"system": "local", "script": SCRIPT, "min_replicas": 2}}},
            "must not exceed",
        ),
        ({"services": {"llm": {"system": "local", "script": SCRIPT, "extra": 1}}}, "extra"),
        ({"service_ports": [30000, 20000]}, "service_ports"),
        ({"service_ports": [80, 90]}, "service_ports"),
        (
            {
                "service_ports": [20000, 20002],
                "services": {"llm": {"system": "local", "script": SCRIPT, "max_replicas": 4}},
            },
            "max_replicas 4 exceeds the 3 ports of service_ports",
        ),
        ({"service_limits": {"replicas_per_service": 65}}, "less than or equal to 64"),
        ({"service_limits": {"services_per_user": -1}}, "greater than or equal to 0"),
        ({"service_limits": {"time_limit": 0}}, "greater than 0"),
        ({"service_limits": {"replicas": 3}}, "extra"),
    ],
)
def test_a_bad_service_table_stops_the_start(
    tmp_path: Path, extra: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValidationError, match=message):
        _settings(tmp_path, **extra)


def test_the_service_limits_have_defaults_and_read_a_slurm_time(tmp_path: Path) -> None:
    limits = _settings(tmp_path).service_limits
    assert (limits.services_per_user, limits.replicas_per_user) == (20, 32)
    assert (limits.replicas_per_service, limits.time_limit) == (16, None)
    limits = _settings(tmp_path, service_limits={"time_limit": "8:00:00"}).service_limits
    assert limits.time_limit == 8 * 3600
