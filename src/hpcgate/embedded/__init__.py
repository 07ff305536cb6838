"""The embedded batch scheduler: a tiny Slurm-like engine for laptops, demos and tests.

It is used only through its command line (standard library only, no other hpcgate import)::

    python -m hpcgate.embedded --spool DIR [--slots N] [--kill-wait SECONDS] COMMAND ...

``--slots`` (jobs running at once, default 2) and ``--kill-wait`` (seconds between SIGTERM and
SIGKILL, default 5) are persisted in the spool whenever given, so later processes use them.

Commands (each prints one JSON document on stdout and exits 0; a refused request prints one
line on stderr and exits 2; an unknown job id exits 3 with ``unknown job ID``):

``submit``
    Reads ``{"script", "script_path", "name", "workdir", "stdout", "stderr", "time_limit",
    "env", "dependencies", "tag"}`` on stdin (null or missing fields take the directive or
    the default; unknown fields are refused), prints ``{"id": "17"}``.
``status [--ids 1,2]``
    Prints ``{"jobs": [JOB, ...]}`` in id order; unknown ids are simply absent. A JOB is
    ``{"id", "tag", "name", "state", "reason", "exit_code", "signal", "submit_time",
    "start_time", "end_time", "workdir", "stdout", "stderr", "time_limit", "dependencies",
    "pid"}`` (times in epoch seconds or null, ``pid`` the script's process).
``cancel ID [ID ...]``
    Prints ``{"cancelled": [ids that were pending or running]}``.
``info``
    Prints ``{"host", "slots", "running", "pending", "memory_mib"}``: the machine the jobs
    run on (its host name and total memory), its job slots and how many jobs run and wait.
``run ID``
    Internal: the job's supervisor, spawned by dispatch. Prints ``{"id", "state"}``.

States: PENDING (reason ``Resources``, ``Dependency``, ``DependencyNeverSatisfied``, or null
while its supervisor is starting), RUNNING, COMPLETED (exit 0), FAILED (non-zero exit, killed
by a signal, or the script could not be started: then ``reason`` says why), CANCELLED,
TIMEOUT, NODE_FAIL (``reason`` "supervisor lost": its supervisor died, e.g. on a reboot).

Supported ``#SBATCH`` directives (in the script's leading comment block; the JSON fields
override them): ``-J/--job-name``, ``-t/--time``, ``-o/--output``, ``-e/--error``,
``-D/--chdir``, ``-d/--dependency``. Every other directive is ignored. Time limits use
Slurm's formats (``M``, ``M:S``, ``H:M:S``, ``D-H``, ``D-H:M``, ``D-H:M:S``; a bare number is
minutes). Output file names expand ``%j`` (job id), ``%x`` (job name) and ``%%``; relative
ones are relative to the working directory. Defaults: name ``script`` (or the basename of
``script_path``), working directory where ``submit`` ran, ``hpcgate-%j.out`` and
``hpcgate-%j.err``. Dependencies: ``after``, ``afterany``, ``afterok``, ``afternotok``, each
``kind:ID[:ID...]``, several joined by commas (all must hold).

Modules: :mod:`.spool` (on-disk layout, atomic writes, locks, config), :mod:`.jobs` (job state
from the spool, cache), :mod:`.submit`, :mod:`.directives`, :mod:`.timefmt`, :mod:`.deps`,
:mod:`.dispatch` (starting queued jobs), :mod:`.runner` (the per-job supervisor),
:mod:`.cancel`, :mod:`.info`, :mod:`.procs` (environments, checked kills), :mod:`.errors`.
"""
