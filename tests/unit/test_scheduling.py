"""How scripts/test's workers share the tests (tests/support/scheduling.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.scheduling import SHARED, SHARED_MODULES, SHARED_TIERS, scope_of

TESTS = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    "nodeid",
    [
        "tests/slurm/test_slurm_faults.py::test_controller_down_is_503_and_hpcgate_recovers",
        "tests/ssh/test_ssh_faults.py::test_sshd_restarted_under_load[cut]",
        "tests/netns/test_netns_agent.py::test_x",
        "tests/fuzz/test_fuzz.py::test_the_api_holds_against_the_fuzzer",
        "tests/backends/test_llama.py::Class::test_y",
        "tests/webui/test_slurm.py::test_a_slurm_job_shows_its_output_live",
    ],
)
def test_the_tiers_that_share_machine_state_are_one_unit(nodeid: str) -> None:
    assert scope_of(nodeid) == SHARED


@pytest.mark.parametrize(
    ("nodeid", "module"),
    [
        ("tests/api/test_files.py::test_a[x::y]", "tests/api/test_files.py"),
        ("tests/api/test_files.py::Class::test_b", "tests/api/test_files.py"),
        ("tests/webui/test_jobs.py::test_c", "tests/webui/test_jobs.py"),
        ("tests/unit/test_slurm_parse.py::test_d", "tests/unit/test_slurm_parse.py"),
    ],
)
def test_any_other_test_goes_with_its_module(nodeid: str, module: str) -> None:
    assert scope_of(nodeid) == module


def test_the_shared_tiers_and_modules_exist() -> None:
    """A renamed directory or module would quietly leave the shared unit."""
    for tier in SHARED_TIERS:
        assert (TESTS / tier).is_dir(), tier
    for module in SHARED_MODULES:
        assert (TESTS.parent / module).is_file(), module
