"""``rlorinfra graph``: the dependency graph of the declared and managed resources.

Reads the config and the state only: no control-plane call and no lock (the
backend replaces its state atomically, so a reader sees the old or the new state,
as ``show`` and ``output`` do).
"""

from __future__ import annotations

from pathlib import Path

import click

from rlorinfra.cli.common import file_option
from rlorinfra.cli.exit_codes import ExitCode
from rlorinfra.cli.runtime import open_workspace
from rlorinfra.render.graph import GraphFormat


@click.command("graph")
@file_option
@click.option(
    "--format",
    "fmt",
    type=click.Choice([f.value for f in GraphFormat]),
    default=GraphFormat.DOT.value,
    show_default=True,
    help="dot (Graphviz) or mermaid (a flowchart for Markdown).",
)
def graph_cmd(config_path: Path, fmt: str) -> ExitCode:
    """Print the resource dependency graph (DOT or Mermaid).

    Nodes are every resource the config declares and every resource in
    state (a removed block shows dashed, as "not in the config"). An arrow
    points from a resource to what it depends on: a deployment to its
    hot_load_trainer job, which apply creates first and destroy deletes
    last. Edges recorded in state show even after the blocks are removed.
    Reads local files only (no control-plane calls, no lock).

    \b
    Examples:
      rlorinfra graph | dot -Tsvg > graph.svg
      rlorinfra graph --format mermaid -f examples/grpo.toml
    """
    from rlorinfra.operations.graph import build_graph
    from rlorinfra.render.graph import render_graph

    workspace = open_workspace(config_path, show_warnings=False)
    graph = build_graph(workspace.config, workspace.store.read())
    click.echo(render_graph(graph, GraphFormat(fmt)), nl=False)
    return ExitCode.OK
