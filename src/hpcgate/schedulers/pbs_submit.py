"""How a :class:`~hpcgate.model.jobs.JobSpec` becomes PBS ``qsub`` options (the rest of the
PBS adapter is :mod:`hpcgate.schedulers.pbs`). Pure: values PBS cannot take are refused
here, before anything is recorded or run.

- ``name`` → ``-N`` (PBS: a letter or digit first, no white space, at most 236
  characters); ``partition`` → ``-q`` queue; ``account`` → ``-A``.
- ``time_limit`` → ``-l walltime=HH:MM:SS``.
- ``nodes``, ``ntasks``, ``cpus_per_task``, ``memory``, ``gpus`` → one ``-l select``
  statement of ``nodes`` (default 1) identical chunks, one chunk per node:
  ``select=N:ncpus=T*C:mpiprocs=T:ompthreads=C:mem=Mmb:ngpus=G`` where T is ``ntasks``
  divided evenly over the nodes, C is ``cpus_per_task``, M is ``memory`` (per node, so per
  chunk) and G is ``gpus`` divided evenly over the nodes (``ngpus`` is the resource name
  the PBS manuals recommend for GPUs; sites define it). Counts that do not divide evenly
  are refused. With more than one node, ``-l place=scatter`` puts each chunk on its own
  host, as Slurm's ``--nodes`` would. Without ``nodes`` every task is in one chunk, so on
  one host.
- ``stdout`` → ``-o``, ``stderr`` → ``-e``: absolute paths only (a relative one would be
  taken from qsub's own directory), without ``:`` (PBS reads ``host:path``) and without
  ``%`` (PBS expands no Slurm-style ``%j`` patterns).
- ``array`` → ``-J start-end[:step]``; Slurm's ``%limit`` → ``-W max_run_subjobs=limit``
  (an attribute since OpenPBS 20 / PBS Pro 2020). Lists, single indices and ranges whose
  end is not above their start have no PBS form and are refused.
- ``dependencies`` → ``-W depend=type:id[:id],...`` (all must hold, as in Slurm); qsub
  completes a bare sequence number with the server's name. Array tasks (``12_3``) are
  refused: PBS cannot depend on a subjob.
- ``environment`` → ``-v NAME=value,...``. qsub splits that list on commas and gives quotes
  and backslashes meanings of its own, so values holding ``, ' " \\`` or control characters
  are refused rather than escaped; names starting with ``PBS_`` are refused because PBS
  sets those itself (qsub drops ``PBS_O_*`` silently).
- ``working_directory`` is not supported: PBS Pro has no option for the directory a job
  starts in (jobs start in the home directory; ``PBS_O_WORKDIR`` is only qsub's own
  directory, and a ``cd`` added to the user's script would be shell text). It is left out
  of :attr:`PbsScheduler.supported_fields`, so it is a 422 naming the field; so is ``qos``,
  which PBS does not have. A job's reported working directory is its ``jobdir`` (where
  PBS started it), known once it runs.
- The gateway's idempotency tag travels as ``-v HPCGATE_TAG=<tag>`` (PBS keeps no free
  comment field for the submitter) and is read back from the job's ``Variable_List``.
  qsub cannot look a tag up before submitting, so a submit is not safe to retry.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from hpcgate.model.errors import SchedulerRejected, UnsupportedField
from hpcgate.model.jobs import JobSpec

TAG_VARIABLE = "HPCGATE_TAG"

_NAME = re.compile(r"^[A-Za-z0-9][!-~]{0,235}$")
_ARRAY = re.compile(r"^(\d+)-(\d+)(?::(\d+))?(?:%(\d+))?$")
_UNSAFE_VALUE = re.compile(r"[,'\"\\\x00-\x1f\x7f]")
_CHUNK_FIELDS = ("nodes", "ntasks", "cpus_per_task", "memory", "gpus")


def qsub_options(spec: JobSpec) -> list[str]:
    """The qsub options for a spec, but ``-v``; raises for values PBS cannot take."""
    argv: list[str] = []
    if spec.name is not None:
        argv += ["-N", _job_name(spec.name)]
    if spec.partition is not None:
        argv += ["-q", spec.partition]
    if spec.account is not None:
        argv += ["-A", spec.account]
    argv += _resources(spec)
    for field, option in (("stdout", "-o"), ("stderr", "-e")):
        if (path := getattr(spec, field)) is not None:
            argv += [option, _output_path(field, path)]
    if spec.array is not None:
        argv += array_options(spec.array)
    if spec.dependencies:
        argv += ["-W", f"depend={','.join(map(_dependency, spec.dependencies))}"]
    return argv


def _job_name(name: str) -> str:
    if not _NAME.match(name):
        raise SchedulerRejected(
            f"PBS job names start with a letter or digit and hold at most 236 printable "
            f"characters without spaces; {name!r} does not"
        )
    return name


def _resources(spec: JobSpec) -> list[str]:
    argv: list[str] = []
    if spec.time_limit is not None:
        argv += ["-l", f"walltime={format_duration(spec.time_limit)}"]
    if any(getattr(spec, field) for field in _CHUNK_FIELDS):  # gpus=0 asks for nothing
        argv += ["-l", f"select={select_statement(spec)}"]
    if (spec.nodes or 1) > 1:
        argv += ["-l", "place=scatter"]
    return argv


def select_statement(spec: JobSpec) -> str:
    """``N:ncpus=..`` — one chunk per node, each with an even share of tasks and GPUs."""
    chunks = spec.nodes or 1
    tasks = _share(spec.ntasks, chunks, "ntasks")
    gpus = _share(spec.gpus, chunks, "gpus")
    threads = spec.cpus_per_task
    parts = [str(chunks), f"ncpus={(tasks or 1) * (threads or 1)}"]
    if tasks is not None:
        parts.append(f"mpiprocs={tasks}")
    if threads is not None:
        parts.append(f"ompthreads={threads}")
    if spec.memory is not None:
        parts.append(f"mem={spec.memory}mb")
    if gpus:
        parts.append(f"ngpus={gpus}")
    return ":".join(parts)


def _share(total: int | None, chunks: int, field: str) -> int | None:
    if total is None:
        return None
    if total % chunks:
        raise UnsupportedField(
            f"PBS chunks are identical, so {field} ({total}) must be a multiple of "
            f"nodes ({chunks})",
            fields=[field, "nodes"],
        )
    return total // chunks


def _output_path(field: str, path: str) -> str:
    problem = _path_problem(path)
    if problem is not None:
        raise UnsupportedField(f"on PBS, {field} {problem}: {path!r}", fields=[field])
    return path


def _path_problem(path: str) -> str | None:
    if not path.startswith("/"):
        return "must be absolute (PBS would take it from qsub's own directory)"
    if ":" in path:
        return "cannot hold ':' (PBS reads 'host:path')"
    if "%" in path:
        return "cannot hold '%' (PBS expands no %j-style patterns)"
    return None


def array_options(text: str) -> list[str]:
    """``-J start-end[:step]`` and, for Slurm's ``%limit``, ``-W max_run_subjobs``."""
    match = _ARRAY.match(text)
    if match is None:
        raise UnsupportedField(
            f"PBS job arrays are one range 'start-end[:step][%limit]'; "
            f"lists and single indices such as {text!r} have no PBS form",
            fields=["array"],
        )
    start, end, step, limit = match.groups()
    if int(end) <= int(start) or step == "0" or limit == "0":
        raise SchedulerRejected(
            f"PBS needs an array's end above its start and a step and limit of at least 1: {text!r}"
        )
    argv = ["-J", f"{start}-{end}" + (f":{step}" if step else "")]
    return argv + (["-W", f"max_run_subjobs={limit}"] if limit else [])


def _dependency(text: str) -> str:
    if "_" in text:
        raise UnsupportedField(
            f"PBS cannot make a job depend on an array task: {text!r}", fields=["dependencies"]
        )
    return text


def variable_list(tag: str, environment: Mapping[str, str]) -> str:
    """``HPCGATE_TAG=tag,NAME=value,...`` for ``qsub -v``; raises for names PBS or hpcgate
    set themselves and for values qsub would split or mangle."""
    for name in environment:
        if name.startswith("PBS_") or name == TAG_VARIABLE:
            raise UnsupportedField(
                f"environment variable {name} is set by PBS or hpcgate itself",
                fields=["environment"],
            )
    variables = {TAG_VARIABLE: tag, **environment}
    for name, value in variables.items():
        if _UNSAFE_VALUE.search(value):
            raise UnsupportedField(
                f"the value of {name} holds a comma, quote, backslash or control character, "
                f"which qsub -v cannot pass unchanged",
                fields=["environment"],
            )
    return ",".join(f"{name}={value}" for name, value in variables.items())


def format_duration(seconds: int) -> str:
    """Seconds as PBS's HH:MM:SS, the hours unbounded."""
    minutes, secs = divmod(seconds, 60)
    hours, mins = divmod(minutes, 60)
    return f"{hours:02d}:{mins:02d}:{secs:02d}"
