"""The dependency graph of resources as text: Graphviz DOT or a Mermaid flowchart (``rlorinfra graph``).

The graph is a plain value (``ResourceGraph``) that ``operations.graph`` builds from the
config and the state; this module only turns it into text. An arrow points from a
resource to what it depends on (``deployment.grpo-rollout -> job.grpo-policy``), as in
``terraform graph``: the deployment is created after the job is ready and deleted
before it. Output is sorted, so the same config and state always print the same text.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from rlorinfra.model.address import Address

EDGE_MEANING = "an arrow points from a resource to what it depends on"


class GraphFormat(StrEnum):
    """The text formats ``rlorinfra graph`` prints."""

    DOT = "dot"
    MERMAID = "mermaid"


class Presence(StrEnum):
    """Where a node is known from: the config, the state, both, or only an edge naming it."""

    MANAGED = "managed"  # declared and in state
    DECLARED = "declared"  # declared, not in state yet (apply would create or import it)
    REMOVED = "removed"  # in state, its block removed from the config
    REFERENCED = "referenced"  # only named by a recorded edge: neither declared nor in state

    @property
    def note(self) -> str:
        """What the label says about it ("" for a managed resource: the usual case)."""
        return _NOTES[self]


_NOTES = {
    Presence.MANAGED: "",
    Presence.DECLARED: "not in state",
    Presence.REMOVED: "not in the config",
    Presence.REFERENCED: "not declared, not in state",
}
# Shown dashed: what the config no longer declares.
_DASHED = frozenset({Presence.REMOVED, Presence.REFERENCED})


@dataclass(frozen=True, order=True)
class GraphNode:
    """One resource: its address, its control-plane ID when known, and where it is known from."""

    address: Address
    resource_id: str | None
    presence: Presence

    def label_lines(self) -> list[str]:
        """The address, then ``<kind> ID <id>`` when the ID is known, then the presence note."""
        lines = [str(self.address)]
        if self.resource_id:
            lines.append(f"{self.address.kind.value} ID {self.resource_id}")
        if self.presence.note:
            lines.append(self.presence.note)
        return lines

    @property
    def dashed(self) -> bool:
        """True when the config does not declare it (a removed block, or an edge's dangling end)."""
        return self.presence in _DASHED


@dataclass(frozen=True, order=True)
class GraphEdge:
    """``source`` depends on ``target``; ``declared`` False: only state records it (a removed block)."""

    source: Address
    target: Address
    declared: bool = True


@dataclass(frozen=True)
class ResourceGraph:
    """Every node and edge, each sorted (by address, then by source and target)."""

    nodes: tuple[GraphNode, ...]
    edges: tuple[GraphEdge, ...]

    def __post_init__(self) -> None:
        # Sorted here, once, so every renderer is deterministic whatever order it was built in.
        object.__setattr__(self, "nodes", tuple(sorted(self.nodes)))
        object.__setattr__(self, "edges", tuple(sorted(self.edges)))


def render_graph(graph: ResourceGraph, fmt: GraphFormat) -> str:
    """``graph`` in ``fmt``, ending with a newline."""
    return render_mermaid(graph) if fmt is GraphFormat.MERMAID else render_dot(graph)


# ---------------------------------------------------------------- DOT


def dot_quote(text: str) -> str:
    """A DOT double-quoted string (backslash, quote and newline escaped)."""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


def render_dot(graph: ResourceGraph) -> str:
    """``digraph rlorinfra { ... }``: quoted node IDs (addresses), dashed where undeclared."""
    lines = [
        "digraph rlorinfra {",
        f"  // {EDGE_MEANING}",
        "  rankdir=LR;",
        "  node [shape=box];",
    ]
    for node in graph.nodes:
        # The label's line breaks are DOT's own "\n" escape, so each line is quoted on its own first.
        label = "\\n".join(dot_quote(line)[1:-1] for line in node.label_lines())
        style = ", style=dashed" if node.dashed else ""
        lines.append(f'  {dot_quote(str(node.address))} [label="{label}"{style}];')
    for edge in graph.edges:
        style = "" if edge.declared else " [style=dashed]"
        lines.append(f"  {dot_quote(str(edge.source))} -> {dot_quote(str(edge.target))}{style};")
    lines.append("}")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- Mermaid


def mermaid_id(address: Address) -> str:
    """A Mermaid node ID for ``address``: ``kind_`` then the name, letters and digits kept.

    Any other character becomes ``_<hex>_`` (``-`` is ``_2d_``, ``_`` itself ``_5f_``), so
    distinct names never share an ID and nothing Mermaid reads as syntax gets through.
    """
    name = "".join(ch if ch.isascii() and ch.isalnum() else f"_{ord(ch):x}_" for ch in address.name)
    return f"{address.kind.value}_{name}"


def mermaid_text(text: str) -> str:
    """Text for a quoted Mermaid label: quotes, ``#`` and angle brackets as entity codes."""
    return "".join(f"#{ord(ch)};" if ch in '"#<>&' else ch for ch in text)


def render_mermaid(graph: ResourceGraph) -> str:
    """``flowchart LR``: one line per node, one per edge (``-.->`` when only state records it)."""
    lines = ["flowchart LR", f"  %% {EDGE_MEANING}"]
    for node in graph.nodes:
        label = "<br/>".join(mermaid_text(line) for line in node.label_lines())
        lines.append(f'  {mermaid_id(node.address)}["{label}"]')
    for edge in graph.edges:
        arrow = "-->" if edge.declared else "-.->"
        lines.append(f"  {mermaid_id(edge.source)} {arrow} {mermaid_id(edge.target)}")
    dashed = [mermaid_id(node.address) for node in graph.nodes if node.dashed]
    if dashed:
        lines.append("  classDef undeclared stroke-dasharray: 5 5")
        lines.append(f"  class {','.join(dashed)} undeclared")
    return "\n".join(lines) + "\n"
