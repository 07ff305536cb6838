"""The utilisation chart: each node's CPUs and memory in use, as bars of an SVG drawn on
the server (no script, no inline style: the template places plain SVG shapes)."""

from __future__ import annotations

from dataclasses import dataclass

from hpcgate.model.status import Node

#: Nodes drawn; a larger system shows its first ones and says how many more there are.
NODES_SHOWN = 48
BAR = 200  # the full bar's width, in the SVG's units
ROW = 22  # one node's height


@dataclass(frozen=True)
class Bar:
    label: str
    y: int
    cpu_width: int
    memory_width: int
    cpu_text: str
    memory_text: str
    down: bool


@dataclass(frozen=True)
class Chart:
    bars: list[Bar]
    height: int
    hidden: int  # nodes not drawn
    cpus_used: int
    cpus_total: int


def _width(used: int, total: int) -> int:
    return 0 if total <= 0 else round(BAR * min(used, total) / total)


def _bar(node: Node, row: int) -> Bar:
    state = node.state.upper()
    return Bar(
        label=node.name,
        y=row * ROW,
        cpu_width=_width(node.cpus_allocated, node.cpus),
        memory_width=_width(node.memory_allocated, node.memory),
        cpu_text=f"{node.cpus_allocated}/{node.cpus} CPUs",
        memory_text=f"{node.memory_allocated}/{node.memory} MiB",
        down=any(word in state for word in ("DOWN", "DRAIN", "FAIL")),
    )


def chart(nodes: list[Node]) -> Chart:
    shown = nodes[:NODES_SHOWN]
    return Chart(
        bars=[_bar(node, row) for row, node in enumerate(shown)],
        height=max(len(shown), 1) * ROW,
        hidden=len(nodes) - len(shown),
        cpus_used=sum(n.cpus_allocated for n in nodes),
        cpus_total=sum(n.cpus for n in nodes),
    )
