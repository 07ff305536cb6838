"""A script cannot set dependencies by directive: the gateway checks only the field's jobs."""

from __future__ import annotations

from pathlib import Path

import pytest

from hpcgate.model.errors import SchedulerRejected
from hpcgate.model.jobs import JobSpec
from hpcgate.schedulers.base import Scheduler
from hpcgate.schedulers.embedded import EmbeddedScheduler
from hpcgate.schedulers.pbs import PbsScheduler
from hpcgate.schedulers.slurm import SlurmScheduler

SBATCH = [SlurmScheduler(), EmbeddedScheduler(Path("/spool"), slots=1, python="/py")]


@pytest.mark.parametrize("scheduler", SBATCH, ids=["slurm", "embedded"])
@pytest.mark.parametrize(
    "directive",
    [
        "-d afterok:7",
        "-dafterok:7",
        "--dependency=afterok:7",
        "--dependency afterany:7",
        "--dep=after:7",
    ],
)
def test_sbatch_dependency_directives_are_refused(scheduler: Scheduler, directive: str) -> None:
    spec = JobSpec(script=f"#!/bin/bash\n#SBATCH -J x\n#SBATCH {directive}\ntrue\n")
    with pytest.raises(SchedulerRejected, match="'dependencies' field"):
        scheduler.check(spec)


def test_pbs_dependency_directives_are_refused() -> None:
    spec = JobSpec(script="#!/bin/bash\n#PBS -N x\n#PBS -W depend=afterok:7.server\ntrue\n")
    with pytest.raises(SchedulerRejected, match="'dependencies' field"):
        PbsScheduler().check(spec)


@pytest.mark.parametrize("scheduler", [*SBATCH, PbsScheduler()], ids=["slurm", "embedded", "pbs"])
def test_other_directives_and_the_field_pass(scheduler: Scheduler) -> None:
    script = "#!/bin/bash\n#SBATCH -D /tmp\n#SBATCH --deadline=now+1hour\n#PBS -N x\ntrue\n"
    scheduler.check(JobSpec(script=script))
    if "dependencies" in scheduler.supported_fields:
        scheduler.check(JobSpec(script="#!/bin/bash\ntrue\n", dependencies=["afterok:7"]))
