"""PBS's description of itself: queues (``qstat -Q -f -F json``), hosts (``pbsnodes -a -F
json``) and reservations (``pbs_rstat -f``), parsed into :mod:`hpcgate.model.status`.

Tested on reconstructed recordings only, like :mod:`hpcgate.schedulers.pbs`.

- **Partitions are queues**, execution and routing alike: a job may name either (a site's
  default queue is often a routing one), and both have the entry limits reported here. A
  reservation's own queue (``R123``) is listed too, since jobs reach a reservation through
  it. State is Slurm's word for the queue's ``enabled`` (takes jobs) and ``started`` (runs
  them) flags. ``default`` is always False: PBS names its default queue only among the
  server's attributes (``qstat -B``), a second command the one-command-per-kind seam has
  no room for. ``nodes`` is empty: a queue does not list its hosts; ``total_cpus`` and
  ``total_nodes`` come from the queue's ``resources_available`` when a site sets them.
- **Nodes** are hosts. Their state is told in Slurm's words so one client reads both: a
  base (DOWN, UNKNOWN, ALLOCATED, MIXED or IDLE, from the state words and the CPUs
  assigned) then flags (``offline`` is DRAIN, so ``down,offline`` reads ``DOWN+DRAIN``);
  a PBS word with no Slurm counterpart is kept, upper-cased, as a flag. The partitions
  are the host's ``queue`` attribute, if set; the reason is its ``comment`` while it is
  down, offline or unknown. Features are not reported (PBS has custom resources instead).
- **Reservations**: named by their id (``R123.server``: ``Reserve_Name`` is a free,
  optional label), ACTIVE while PBS says running (state RESV_RUNNING, or substate 5 for
  one whose state says degraded or in conflict; the latter is not yet seen on a live
  server), their queue as the partition, the users ``Authorized_Users`` lets in, and
  PBS's own state (CONFIRMED, RUNNING, DEGRADED...) as a flag, with STANDING for a
  recurring one. Accounts are empty: PBS authorizes users and groups, not accounts.
- **Associations**: PBS keeps none (``-A`` is a free string, checked only by site
  hooks), so no command is run and every account has none.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from hpcgate.model.commands import Command, CommandResult
from hpcgate.model.status import Association, Node, Partition, Reservation
from hpcgate.schedulers.base import ClusterInfo
from hpcgate.schedulers.pbs_format import (
    as_int,
    as_mapping,
    as_text,
    parse_duration,
    parse_size_mb,
    raise_for,
    raise_message,
    read_json,
    time_of,
)

#: A queue's (enabled, started) in Slurm's words: one that takes jobs but starts none is
#: DOWN, one that starts its jobs but takes no new ones is DRAIN.
QUEUE_STATES: dict[tuple[bool, bool], str] = {
    (True, True): "UP",
    (True, False): "DOWN",
    (False, True): "DRAIN",
    (False, False): "INACTIVE",
}
#: Host state words that make a host unusable, in order of precedence, as Slurm's base state.
UNUSABLE: dict[str, str] = {
    "down": "DOWN",
    "state-unknown": "UNKNOWN",
    "Stale": "UNKNOWN",
    "unresolvable": "UNKNOWN",
}
BUSY = frozenset({"job-busy", "job-exclusive"})
_BASE_WORDS = frozenset({*UNUSABLE, *BUSY, "free"})  # told by the base state, not a flag
#: Host state words Slurm writes as flags after the base state.
FLAGS: dict[str, str] = {
    "offline": "DRAIN",
    "offline_by_mom": "DRAIN",
    "maintenance": "MAINT",
    "resv-exclusive": "RESERVED",
    "provisioning": "POWERING_UP",
    "wait-provisioning": "POWERING_UP",
    "sleep": "POWERED_DOWN",
}
#: Host states in which the host's comment says why it cannot be used.
EXPLAINED = frozenset({*UNUSABLE, "offline", "offline_by_mom", "maintenance"})
RUNNING_SUBSTATE = "5"  # RESV_RUNNING in OpenPBS's enum resv_states
_TRUE = frozenset({"True", "true", "TRUE", "1"})  # as qstat's own istrue() reads them


class PbsInfo(ClusterInfo):
    """PBS's queues, hosts and reservations."""

    def partitions_command(self) -> Command:
        return Command(("qstat", "-Q", "-f", "-F", "json"))

    def parse_partitions(self, result: CommandResult) -> list[Partition]:
        queues = objects(result, "qstat -Q", "Queue")
        return [_partition(name, attrs) for name, attrs in queues.items()]

    def nodes_command(self) -> Command:
        return Command(("pbsnodes", "-a", "-F", "json"))

    def parse_nodes(self, result: CommandResult) -> list[Node]:
        hosts = objects(result, "pbsnodes", "nodes")
        return [_node(name, attrs) for name, attrs in hosts.items()]

    def reservations_command(self) -> Command:
        return Command(("pbs_rstat", "-f"))

    def parse_reservations(self, result: CommandResult) -> list[Reservation]:
        raise_for(result)
        text = result.stdout.decode(errors="replace")
        if "Resv ID:" not in text and result.stderr.strip():
            # pbs_rstat reports a failed query on stderr but still exits 0
            raise_message(result.stderr.decode(errors="replace"))
        return [_reservation(resv_id, attrs) for resv_id, attrs in records(text)]

    def associations_command(self, account: str) -> Command | None:
        return None

    def parse_associations(self, result: CommandResult) -> list[Association]:
        return []


def objects(result: CommandResult, command: str, key: str) -> dict[str, Mapping[str, Any]]:
    """The objects under ``key`` of a PBS JSON document, by name; none for no output
    (``pbsnodes -a`` on a server without hosts says so on stderr and exits 0)."""
    raise_for(result)
    if not result.stdout.strip():
        return {}
    found = as_mapping(read_json(result.stdout, command).get(key))
    return {str(name): as_mapping(attrs) for name, attrs in found.items()}


def records(text: str) -> Iterator[tuple[str, dict[str, str]]]:
    """``pbs_rstat -f``'s reservations: a ``Resv ID: <id>`` line, then ``name = value``
    lines (``Resource_List.ncpus = 4``), then a blank line."""
    current: tuple[str, dict[str, str]] | None = None
    for line in text.splitlines():
        if line.startswith("Resv ID:"):
            if current is not None:
                yield current
            current = (line.partition(":")[2].strip(), {})
        elif current is not None and " = " in line:
            name, _, value = line.partition(" = ")
            current[1][name.strip()] = value.strip()
    if current is not None:
        yield current


def node_state(text: str, cpus: int, allocated: int) -> str:
    """Slurm's words for a host's PBS state (``down,offline`` → ``DOWN+DRAIN``)."""
    words = [word.strip() for word in text.split(",") if word.strip()]
    flags = [FLAGS.get(word, word.upper()) for word in words if word not in _BASE_WORDS]
    return "+".join(dict.fromkeys([_base_state(words, cpus, allocated), *flags]))


def _base_state(words: list[str], cpus: int, allocated: int) -> str:
    for word, state in UNUSABLE.items():
        if word in words:
            return state
    if BUSY.intersection(words) or (cpus and allocated >= cpus):
        return "ALLOCATED"
    return "MIXED" if allocated else "IDLE"


def allowed_users(text: str | None) -> list[str]:
    """The users an ACL (``+alice,bob@host,-carol``) lets in, without their hosts."""
    entries = (entry.strip() for entry in (text or "").split(","))
    names = (entry.lstrip("+").partition("@")[0] for entry in entries if entry[:1] != "-")
    return list(dict.fromkeys(name for name in names if name))


def reserved_hosts(text: str | None) -> list[str]:
    """The hosts of ``resv_nodes`` (``(node01:ncpus=4)+(node02:ncpus=4:mem=8gb)``)."""
    chunks = (chunk.strip().strip("()") for chunk in (text or "").split("+"))
    return list(dict.fromkeys(chunk.partition(":")[0] for chunk in chunks if chunk))


def _partition(name: str, attrs: Mapping[str, Any]) -> Partition:
    available = as_mapping(attrs.get("resources_available"))
    maximum = as_mapping(attrs.get("resources_max"))
    default = as_mapping(attrs.get("resources_default"))
    return Partition(
        name=name,
        state=QUEUE_STATES[_true(attrs.get("enabled")), _true(attrs.get("started"))],
        default=False,
        nodes=[],
        total_cpus=as_int(available.get("ncpus")),
        total_nodes=as_int(available.get("nodect")),
        max_time=parse_duration(maximum.get("walltime")),
        default_time=parse_duration(default.get("walltime")),
        max_nodes=as_int(maximum.get("nodect")),
    )


def _node(name: str, attrs: Mapping[str, Any]) -> Node:
    available = as_mapping(attrs.get("resources_available"))
    assigned = as_mapping(attrs.get("resources_assigned"))  # pbsnodes leaves out zeros
    cpus = as_int(available.get("ncpus")) or 0
    allocated = as_int(assigned.get("ncpus")) or 0
    state = str(attrs.get("state", ""))
    queue = as_text(attrs.get("queue"))
    explained = EXPLAINED.intersection(word.strip() for word in state.split(","))
    return Node(
        name=name,
        state=node_state(state, cpus, allocated),
        partitions=[queue] if queue else [],
        cpus=cpus,
        cpus_allocated=allocated,
        memory=parse_size_mb(available.get("mem")) or 0,
        memory_allocated=parse_size_mb(assigned.get("mem")) or 0,
        gpus=as_int(available.get("ngpus")) or 0,
        features=[],
        reason=as_text(attrs.get("comment")) if explained else None,
        address=as_text(attrs.get("Mom")) or name,  # the host its MoM runs on
    )


def _reservation(resv_id: str, attrs: dict[str, str]) -> Reservation:
    state = attrs.get("reserve_state", "")
    running = state == "RESV_RUNNING" or attrs.get("reserve_substate") == RUNNING_SUBSTATE
    flags = [state.removeprefix("RESV_")] if state else []
    return Reservation(
        name=resv_id,
        state="ACTIVE" if running else "INACTIVE",
        start_time=time_of(attrs.get("reserve_start")),
        end_time=time_of(attrs.get("reserve_end")),
        nodes=reserved_hosts(attrs.get("resv_nodes")),
        users=allowed_users(attrs.get("Authorized_Users")),
        accounts=[],
        partition=attrs.get("queue") or None,
        flags=flags + (["STANDING"] if "reserve_rrule" in attrs else []),
    )


def _true(value: object) -> bool:
    return value is True or str(value) in _TRUE
