"""Unit tests of the pure parts: Slurm time format, #SBATCH directives, dependencies, patterns."""

from __future__ import annotations

import pytest

from hpcgate.embedded.deps import parse_dependencies
from hpcgate.embedded.directives import Directives, parse_directives
from hpcgate.embedded.errors import UserError
from hpcgate.embedded.submit import expand_pattern
from hpcgate.embedded.timefmt import parse_time


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("1-02:03:04", 93784), (" 5 ", 300), ("0", None), ("UNLIMITED", None), ("infinite", None)],
)
def test_slurm_time_formats(text: str, seconds: int | None) -> None:
    assert parse_time(text) == seconds


@pytest.mark.parametrize(
    "text", ["", "abc", "1:2:3:4", "-5", "1-", "1-2:3:4:5", "1.5", "1:", ":1", "1h", "-1-2", "٣"]
)
def test_malformed_times_are_refused(text: str) -> None:
    with pytest.raises(UserError, match="invalid time limit"):
        parse_time(text)


def test_directives_in_every_form() -> None:
    script = "\n".join(
        [
            "#!/bin/bash",
            "#SBATCH -J first",
            "#SBATCH --job-name=second",
            "",
            "# an ordinary comment",
            "#SBATCH --time 1:30   # trailing comment",
            "#SBATCH -o out-%j.txt --error=err.txt",
            "#SBATCH -D/scratch --dependency afterok:3",
            "echo start",
            "#SBATCH -J too-late",
        ]
    )
    assert parse_directives(script) == Directives(
        name="second",
        time_limit=90,
        output="out-%j.txt",
        error="err.txt",
        chdir="/scratch",
        dependency="afterok:3",
    )


def test_unknown_directives_are_skipped_with_their_values() -> None:
    script = (
        "#!/bin/sh\n#SBATCH --exclusive -J a\n#SBATCH --mem 4G -t 5\n"
        "#SBATCH -p gpu --output o.txt\n#SBATCH --account=x -e 'my err.txt'\n#SBATCH -N2\n"
    )
    assert parse_directives(script) == Directives(
        name="a", time_limit=300, output="o.txt", error="my err.txt"
    )


def test_only_real_directive_lines_count() -> None:
    script = "#!/bin/sh\n# SBATCH -J spaced\n#SBATCHX -J glued\n  #SBATCH -J indented\n"
    assert parse_directives(script).name is None


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("#SBATCH -t soon", "invalid time limit"),
        ("#SBATCH --job-name", "needs a value"),
        ("#SBATCH -J 'unbalanced", "malformed"),
        ("#SBATCH --output=", "needs a value"),
    ],
)
def test_bad_directives_are_refused(line: str, message: str) -> None:
    with pytest.raises(UserError, match=message):
        parse_directives(f"#!/bin/sh\n{line}\n")


def test_dependencies_are_normalised() -> None:
    entries = ["afterok:1:2,afterany:3", "after:4", "afternotok:05", "afterok:1"]
    assert parse_dependencies(entries) == [
        "afterok:1",
        "afterok:2",
        "afterany:3",
        "after:4",
        "afternotok:5",
    ]


@pytest.mark.parametrize(
    "entry", ["afterok", "afterok:", "afterok:x", "before:1", "singleton", "afterok:1?afterany:2"]
)
def test_bad_dependencies_are_refused(entry: str) -> None:
    with pytest.raises(UserError, match="invalid dependency"):
        parse_dependencies([entry])


@pytest.mark.parametrize(
    ("pattern", "expanded"),
    [
        ("hpcgate-%j.out", "hpcgate-17.out"),
        ("%x/%j-%x.log", "my job/17-my job.log"),
        ("100%%-%j", "100%-17"),
        ("%u-%A%", "%u-%A%"),
    ],
)
def test_file_name_patterns(pattern: str, expanded: str) -> None:
    assert expand_pattern(pattern, "17", "my job") == expanded


def test_a_time_limit_longer_than_the_gateway_stores_is_refused() -> None:
    """``-t 99999999999999999999`` (minutes) is refused at submit, not recorded to break
    the watcher later; the longest limit taken is 35791394 minutes, as in Slurm."""
    with pytest.raises(UserError, match="too long"):
        parse_directives("#!/bin/sh\n#SBATCH -t 99999999999999999999\n")
    with pytest.raises(UserError, match="too long"):
        parse_time("35791395")
    assert parse_time("35791394") == 35791394 * 60
