"""The dependency graph of the declared and the managed resources (``rlorinfra graph``).

Pure: from a loaded config and a state value to a ``ResourceGraph``. Nodes are every
resource the config declares and every resource state manages; edges come from the
config (a deployment's ``hot_load_trainer``) and from the ``depends_on`` that state
records, so a removed block still shows with the edge destroy will follow.
"""

from __future__ import annotations

from collections.abc import Iterable

from rlorinfra.config.model import Config
from rlorinfra.model.address import Address, Kind
from rlorinfra.render.graph import GraphEdge, GraphNode, Presence, ResourceGraph
from rlorinfra.state.model import State


def declared_ids(config: Config) -> dict[Address, str | None]:
    """Every declared address and its control-plane ID when the config alone knows it.

    A deployment's ID is its table key; a job's ID is chosen at create time, so only
    state knows it.
    """
    declared: dict[Address, str | None] = {Address.job(name): None for name in config.jobs}
    declared.update({Address(Kind.DEPLOYMENT, name): name for name in config.deployments})
    return declared


def declared_edges(config: Config) -> set[tuple[Address, Address]]:
    """(dependent, dependency) pairs the config declares: each deployment to its hot-load trainer."""
    return {
        (Address(Kind.DEPLOYMENT, name), Address.job(spec.hot_load_trainer))
        for name, spec in config.deployments.items()
        if spec.hot_load_trainer
    }


def recorded_edges(state: State) -> set[tuple[Address, Address]]:
    """(dependent, dependency) pairs state records (``depends_on`` of every record)."""
    return {
        (Address(kind, name), target)
        for kind, records in state.resources.items()
        for name, record in records.items()
        for target in record.depends_on
    }


def build_graph(config: Config, state: State) -> ResourceGraph:
    """The graph of ``config``'s resources and ``state``'s, with both sources' edges."""
    declared = declared_ids(config)
    in_state = set(state.addresses())
    nodes = {address: _node(address, declared, state) for address in set(declared) | in_state}
    wanted = declared_edges(config)
    edges = [GraphEdge(src, dst, declared=(src, dst) in wanted) for src, dst in wanted | recorded_edges(state)]
    for address in _dangling(edges, nodes):
        nodes[address] = GraphNode(address, None, Presence.REFERENCED)
    return ResourceGraph(nodes=tuple(nodes.values()), edges=tuple(edges))


def _node(address: Address, declared: dict[Address, str | None], state: State) -> GraphNode:
    record = state.record(address)
    if record is None:
        return GraphNode(address, declared[address], Presence.DECLARED)
    presence = Presence.MANAGED if address in declared else Presence.REMOVED
    return GraphNode(address, record.resource_id, presence)


def _dangling(edges: Iterable[GraphEdge], nodes: dict[Address, GraphNode]) -> set[Address]:
    """Edge ends that are no node: a recorded dependency on something neither declared nor in state."""
    return {end for edge in edges for end in (edge.source, edge.target) if end not in nodes}
