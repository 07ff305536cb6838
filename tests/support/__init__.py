"""What the test tiers and the benchmarks share: a real gateway process, the test sshd and
Slurm cluster, jobs and tasks through the API, an SSE reader, hostile argv.

A package, not a conftest, so that ``bench/`` imports it the same way the tests do:
``from tests.support.gateway_process import new_gateway``, with the repository root as the
working directory (pytest's rootdir; ``python -m bench.bench`` for the benchmarks). Fixtures
stay in the tiers' conftest.py files, which pytest loads and no module imports.
"""
