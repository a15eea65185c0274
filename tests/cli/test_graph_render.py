"""The graph builder and its renderers, without the CLI: sources of nodes and edges, IDs, escaping."""

from __future__ import annotations

import re
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from rlorinfra.config.load import load_config
from rlorinfra.model.address import Address, Kind
from rlorinfra.operations.graph import build_graph, declared_edges, declared_ids
from rlorinfra.render.graph import (
    GraphEdge,
    GraphFormat,
    GraphNode,
    Presence,
    ResourceGraph,
    dot_quote,
    mermaid_id,
    render_graph,
)
from rlorinfra.state.model import DeploymentRecord, JobRecord, State

TOML = """
[jobs.policy]
base_model = "accounts/fireworks/models/qwen3-8b"
training_shape = "ts-qwen3-8b-policy"

[deployments.rollout]
base_model = "accounts/fireworks/models/qwen3-8b"
hot_load_trainer = "policy"
"""
JOB = Address.job("policy")
DEP = Address(Kind.DEPLOYMENT, "rollout")


def config(tmp_path: Path, text: str = TOML):
    path = tmp_path / "rlorinfra.toml"
    path.write_text(text)
    return load_config(path, env={})


def job_record(job_id: str) -> JobRecord:
    return JobRecord(job_id=job_id, job_name=f"accounts/a/rlorTrainerJobs/{job_id}", endpoint="", spec={})


def test_declared_ids_and_edges_come_from_the_config(tmp_path: Path):
    loaded = config(tmp_path)
    assert declared_ids(loaded) == {JOB: None, DEP: "rollout"}  # a job's ID is only known once created
    assert declared_edges(loaded) == {(DEP, JOB)}


def test_presence_of_each_node(tmp_path: Path):
    state = State().with_job("policy", job_record("p-1")).with_job("old", job_record("o-1"))
    graph = build_graph(config(tmp_path), state)
    assert graph.nodes == (
        GraphNode(DEP, "rollout", Presence.DECLARED),
        GraphNode(Address.job("old"), "o-1", Presence.REMOVED),
        GraphNode(JOB, "p-1", Presence.MANAGED),
    )
    assert graph.edges == (GraphEdge(DEP, JOB, declared=True),)


def test_an_edge_both_declared_and_recorded_is_one_declared_edge(tmp_path: Path):
    record = DeploymentRecord(deployment_id="rollout", deployment_name="n", spec={}, depends_on=(JOB,))
    graph = build_graph(config(tmp_path), State().with_record(DEP, record))
    assert graph.edges == (GraphEdge(DEP, JOB, declared=True),)


def test_the_graph_value_sorts_itself():
    a, b = GraphNode(JOB, None, Presence.DECLARED), GraphNode(DEP, None, Presence.DECLARED)
    assert ResourceGraph(nodes=(a, b), edges=()).nodes == (b, a)


def test_dot_quote_escapes_backslash_quote_and_newline():
    assert dot_quote('a\\b"c\nd') == '"a\\\\b\\"c\\nd"'


def test_an_empty_graph_renders_in_both_formats():
    empty = ResourceGraph(nodes=(), edges=())
    assert render_graph(empty, GraphFormat.DOT).endswith("node [shape=box];\n}\n")
    assert render_graph(empty, GraphFormat.MERMAID).splitlines()[0] == "flowchart LR"


names = st.text(min_size=1, max_size=12)


@given(names, names)
def test_mermaid_ids_are_safe_and_never_shared(first: str, second: str):
    one, two = mermaid_id(Address.job(first)), mermaid_id(Address.job(second))
    assert re.fullmatch(r"job_[A-Za-z0-9_]+", one)
    assert (one == two) == (first == second)
    assert mermaid_id(Address(Kind.DEPLOYMENT, first)) != one
