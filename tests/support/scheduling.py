"""How ``pytest -n N --dist loadscope`` (scripts/test) shares the tests among its workers.

A module's tests go to one worker, so that its module fixtures (a gateway each, mostly)
start once. The tiers that share machine state go, all of them, to one worker, where they
run one after the other as they would without workers: the cluster of scripts/slurm (a test
stops its controller), the sshd of scripts/sshd (tests restart it), the agent's network
namespace, and the tiers that want the machine's cores (the fuzzer's sandbox, the backends'
model servers). The split is by test id alone: the process that hands out the tests
collects none.

(pytest-xdist's own ``--dist loadgroup`` cannot do this here: it marks a group in a test's
``_nodeid``, which pytest 9 no longer reads.)
"""

from __future__ import annotations

from xdist.scheduler import LoadScopeScheduling

#: The tiers (directories of tests/) that share machine state.
SHARED_TIERS = frozenset({"slurm", "ssh", "netns", "fuzz", "backends"})
#: Modules elsewhere that use the shared cluster or sshd.
SHARED_MODULES = frozenset({"tests/webui/test_slurm.py"})
SHARED = "shared machine state"


def scope_of(nodeid: str) -> str:
    """The unit of work a test belongs to: :data:`SHARED` or its module."""
    module = nodeid.split("::", 1)[0]
    parts = module.split("/")
    if module in SHARED_MODULES or (len(parts) > 2 and parts[1] in SHARED_TIERS):
        return SHARED
    return module


class TierScheduling(LoadScopeScheduling):  # type: ignore[misc]  # xdist has no type hints
    """``loadscope`` with :func:`scope_of` as the scope."""

    def _split_scope(self, nodeid: str) -> str:
        return scope_of(nodeid)
