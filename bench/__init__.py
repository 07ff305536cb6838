"""hpcgate's benchmarks, run as modules from the repository root (``python -m bench.bench``).

A package so that its scripts import one another and the test support
(``tests.support``) by their names, with no ``sys.path`` edits: the working directory,
the repository root, is where Python finds both ``bench`` and ``tests``.
"""
