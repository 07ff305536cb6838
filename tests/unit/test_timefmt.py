from __future__ import annotations

import pytest

from hpcgate.model.timefmt import parse_memory, parse_time_limit


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("30", 1800),
        ("0:30", 30),
        ("1:30", 90),
        ("1:00:00", 3600),
        ("2-0", 172800),
        ("1-2:03", 93780),
        ("1-02:03:04", 93784),
        (" 5 ", 300),
    ],
)
def test_slurm_time_formats(text: str, seconds: int) -> None:
    assert parse_time_limit(text) == seconds


@pytest.mark.parametrize(
    "text", ["", "soon", "1:2:3:4", "-5", "1-", "1.5", "1:x", "1-2:3:4:5", ":1", "\u0663"]
)
def test_bad_time_formats(text: str) -> None:
    with pytest.raises(ValueError, match="invalid time limit"):
        parse_time_limit(text)


@pytest.mark.parametrize(
    ("text", "mib"),
    [("512M", 512), ("4G", 4096), ("4096", 4096), ("1T", 1048576), ("2048K", 2), ("1gb", 1024)],
)
def test_memory_formats(text: str, mib: int) -> None:
    assert parse_memory(text) == mib


def test_bad_memory() -> None:
    with pytest.raises(ValueError, match="invalid memory"):
        parse_memory("lots")
