"""`rlorinfra graph`: the dependency graph in DOT and Mermaid, from the config and the state."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from rlorinfra.model.address import Address, Kind
from rlorinfra.state.backends.local import LocalBackend
from rlorinfra.state.model import DeploymentRecord, JobRecord, Record, State
from tests.conftest import run_cli

REPO = Path(__file__).resolve().parents[2]

JOBS = """
[jobs.grpo-policy]
base_model = "accounts/fireworks/models/qwen3-8b"
training_shape = "ts-qwen3-8b-policy"

[jobs."grpo reference"]
base_model = "accounts/fireworks/models/qwen3-8b"
training_shape = "ts-qwen3-8b-reference"
forward_only = true
"""
DEPLOYMENT = """
[deployments.grpo-rollout]
base_model = "accounts/fireworks/models/qwen3-8b"
hot_load_trainer = "grpo-policy"
"""

POLICY = JobRecord(
    job_id="policy-1",
    job_name="accounts/acct/rlorTrainerJobs/policy-1",
    endpoint="http://e",
    spec={},
    phase="ready",
)
ROLLOUT = DeploymentRecord(
    deployment_id="grpo-rollout",
    deployment_name="accounts/acct/deployments/grpo-rollout",
    spec={},
    phase="ready",
    depends_on=(Address.job("grpo-policy"),),
)


def write_config(folder: Path, text: str) -> Path:
    path = folder / "rlorinfra.toml"
    path.write_text(text)
    return path


def write_state(folder: Path, records: dict[Address, Record]) -> None:
    backend = LocalBackend(folder / "rlorinfra.state.json")
    state, version = backend.read()
    for address, record in records.items():
        state = state.with_record(address, record)
    backend.write(state, version)


def graph(folder: Path, *args: str) -> str:
    result = run_cli(["graph", *args], cwd=folder)
    assert result.exit_code == 0, result.output
    return result.stdout


# ------------------------------------------------------------------ exact output


def test_dot_of_a_small_config_without_state(tmp_path: Path):
    write_config(tmp_path, JOBS + DEPLOYMENT)
    assert graph(tmp_path) == (
        "digraph rlorinfra {\n"
        "  // an arrow points from a resource to what it depends on\n"
        "  rankdir=LR;\n"
        "  node [shape=box];\n"
        '  "deployment.grpo-rollout" [label="deployment.grpo-rollout\\ndeployment ID grpo-rollout\\nnot in state"];\n'
        '  "job.grpo reference" [label="job.grpo reference\\nnot in state"];\n'
        '  "job.grpo-policy" [label="job.grpo-policy\\nnot in state"];\n'
        '  "deployment.grpo-rollout" -> "job.grpo-policy";\n'
        "}\n"
    )


def test_mermaid_of_a_small_config_with_state(tmp_path: Path):
    write_config(tmp_path, JOBS + DEPLOYMENT)
    write_state(tmp_path, {Address.job("grpo-policy"): POLICY, Address(Kind.DEPLOYMENT, "grpo-rollout"): ROLLOUT})
    assert graph(tmp_path, "--format", "mermaid") == (
        "flowchart LR\n"
        "  %% an arrow points from a resource to what it depends on\n"
        '  deployment_grpo_2d_rollout["deployment.grpo-rollout<br/>deployment ID grpo-rollout"]\n'
        '  job_grpo_20_reference["job.grpo reference<br/>not in state"]\n'
        '  job_grpo_2d_policy["job.grpo-policy<br/>job ID policy-1"]\n'
        "  deployment_grpo_2d_rollout --> job_grpo_2d_policy\n"
    )


def test_output_is_the_same_whatever_the_declaration_order(tmp_path: Path):
    write_config(tmp_path, JOBS + DEPLOYMENT)
    first = graph(tmp_path)
    policy, reference = JOBS.split('[jobs."grpo reference"]')
    write_config(tmp_path, DEPLOYMENT + '[jobs."grpo reference"]' + reference + policy)
    assert graph(tmp_path) == first


# ------------------------------------------------------------------ removed blocks


def test_a_removed_deployment_block_still_shows_with_its_recorded_edge(tmp_path: Path):
    write_config(tmp_path, JOBS)  # [deployments.grpo-rollout] removed
    write_state(tmp_path, {Address.job("grpo-policy"): POLICY, Address(Kind.DEPLOYMENT, "grpo-rollout"): ROLLOUT})
    dot = graph(tmp_path)
    assert (
        '  "deployment.grpo-rollout" [label="deployment.grpo-rollout\\ndeployment ID grpo-rollout'
        '\\nnot in the config", style=dashed];\n'
    ) in dot
    assert '  "deployment.grpo-rollout" -> "job.grpo-policy" [style=dashed];\n' in dot
    mermaid = graph(tmp_path, "--format", "mermaid")
    assert "  deployment_grpo_2d_rollout -.-> job_grpo_2d_policy\n" in mermaid
    assert mermaid.endswith(
        "  classDef undeclared stroke-dasharray: 5 5\n  class deployment_grpo_2d_rollout undeclared\n"
    )


def test_both_blocks_removed_still_show_the_edge_destroy_follows(tmp_path: Path):
    write_config(tmp_path, "")
    write_state(tmp_path, {Address.job("grpo-policy"): POLICY, Address(Kind.DEPLOYMENT, "grpo-rollout"): ROLLOUT})
    dot = graph(tmp_path)
    assert '"job.grpo-policy" [label="job.grpo-policy\\njob ID policy-1\\nnot in the config", style=dashed]' in dot
    assert '"deployment.grpo-rollout" -> "job.grpo-policy" [style=dashed];' in dot


def test_a_recorded_edge_to_a_resource_gone_from_everywhere_gets_a_node(tmp_path: Path):
    write_config(tmp_path, "")
    write_state(tmp_path, {Address(Kind.DEPLOYMENT, "grpo-rollout"): ROLLOUT})
    dot = graph(tmp_path)
    assert '"job.grpo-policy" [label="job.grpo-policy\\nnot declared, not in state", style=dashed]' in dot
    assert '"deployment.grpo-rollout" -> "job.grpo-policy" [style=dashed];' in dot


def test_a_re_pointed_deployment_shows_the_declared_and_the_recorded_edge(tmp_path: Path):
    write_config(tmp_path, JOBS + DEPLOYMENT.replace('"grpo-policy"', '"grpo reference"'))
    write_state(tmp_path, {Address.job("grpo-policy"): POLICY, Address(Kind.DEPLOYMENT, "grpo-rollout"): ROLLOUT})
    dot = graph(tmp_path)
    assert '  "deployment.grpo-rollout" -> "job.grpo reference";\n' in dot
    assert '  "deployment.grpo-rollout" -> "job.grpo-policy" [style=dashed];\n' in dot


# ------------------------------------------------------------------ structure


NODE_RE = re.compile(r'^  ([A-Za-z][A-Za-z0-9_]*)\["([^"]*)"\]$')
EDGE_RE = re.compile(r"^  ([A-Za-z][A-Za-z0-9_]*) (-->|-\.->) ([A-Za-z][A-Za-z0-9_]*)$")
ODD_NAMES = """
[jobs."a.b"]
base_model = "accounts/fireworks/models/qwen3-8b"
training_shape = "ts-qwen3-8b-policy"

[jobs.a_b]
base_model = "accounts/fireworks/models/qwen3-8b"
training_shape = "ts-qwen3-8b-policy"

[jobs."quote \\" # <tag>"]
base_model = "accounts/fireworks/models/qwen3-8b"
training_shape = "ts-qwen3-8b-policy"

[deployments.a-b]
base_model = "accounts/fireworks/models/qwen3-8b"
hot_load_trainer = "a.b"

[deployments.ab]
base_model = "accounts/fireworks/models/qwen3-8b"
hot_load_trainer = 'quote " # <tag>'
"""


def test_mermaid_parses_structurally_with_awkward_names(tmp_path: Path):
    write_config(tmp_path, ODD_NAMES)
    lines = graph(tmp_path, "--format", "mermaid").splitlines()
    assert lines[0] == "flowchart LR"
    body = [line for line in lines[1:] if not line.startswith("  %%")]
    nodes = [m.groups() for m in map(NODE_RE.match, body) if m]
    edges = [m.groups() for m in map(EDGE_RE.match, body) if m]
    assert len(nodes) + len(edges) == len(body), body  # every line is a node or an edge
    ids = [node_id for node_id, _ in nodes]
    assert len(ids) == len(set(ids)) == 5  # "a.b", "a_b", "a-b", "ab" never share an ID
    assert {source for source, _, _ in edges} | {target for _, _, target in edges} <= set(ids)
    labels = {label.split("<br/>")[0] for _, label in nodes}
    assert "job.quote #34; #35; #60;tag#62;" in labels  # quotes, '#' and brackets as entity codes
    assert len(edges) == 2 and all(arrow == "-->" for _, arrow, _ in edges)


def test_dot_quotes_every_node_id_and_escapes_quotes(tmp_path: Path):
    write_config(tmp_path, ODD_NAMES)
    lines = graph(tmp_path).splitlines()
    assert lines[0] == "digraph rlorinfra {" and lines[-1] == "}"
    quoted = r'"(?:[^"\\]|\\.)*"'
    node_re = re.compile(rf"^  {quoted} \[label={quoted}(, style=dashed)?\];$")
    edge_re = re.compile(rf"^  {quoted} -> {quoted}( \[style=dashed\])?;$")
    body = lines[4:-1]
    assert all(node_re.match(line) or edge_re.match(line) for line in body), body
    assert '  "deployment.ab" -> "job.quote \\" # <tag>";' in body


# ------------------------------------------------------------------ errors, lock


def test_an_invalid_config_is_a_clear_error(tmp_path: Path):
    write_config(tmp_path, DEPLOYMENT)  # names a trainer the file does not declare
    result = run_cli(["graph"], cwd=tmp_path)
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: Invalid configuration")
    assert "hot_load_trainer" in result.stderr and "Traceback" not in result.stderr


def test_a_corrupt_state_is_a_clear_error(tmp_path: Path):
    write_config(tmp_path, JOBS)
    (tmp_path / "rlorinfra.state.json").write_text('{"format_version": ')
    result = run_cli(["graph"], cwd=tmp_path)
    assert result.exit_code == 1 and result.stdout == ""
    assert "is corrupt" in result.stderr and "Traceback" not in result.stderr


def test_an_unknown_format_is_a_usage_error(tmp_path: Path):
    write_config(tmp_path, JOBS)
    result = run_cli(["graph", "--format", "svg"], cwd=tmp_path)
    assert result.exit_code == 1 and "'svg' is not one of 'dot', 'mermaid'" in result.stderr


@pytest.mark.parametrize("spelling", [["--format", "mermaid"], ["-format=mermaid"]])
def test_terraform_spelling_of_the_format(tmp_path: Path, spelling: list[str]):
    write_config(tmp_path, JOBS)
    assert graph(tmp_path, *spelling).startswith("flowchart LR\n")


def test_graph_reads_the_state_without_the_lock(tmp_path: Path):
    """A subprocess, as a user runs it, while another run holds the state lock."""
    config = write_config(tmp_path, JOBS + DEPLOYMENT)
    write_state(tmp_path, {Address.job("grpo-policy"): POLICY})
    backend = LocalBackend(tmp_path / "rlorinfra.state.json")
    with backend.lock("apply", timeout=1):
        result = subprocess.run(
            [sys.executable, "-m", "rlorinfra", "graph", "-f", str(config)],
            capture_output=True,
            text=True,
            timeout=60,
            env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
        )
    assert result.returncode == 0, result.stderr
    assert '"job.grpo-policy" [label="job.grpo-policy\\njob ID policy-1"];' in result.stdout


def test_state_is_left_untouched(tmp_path: Path):
    write_config(tmp_path, JOBS)
    graph(tmp_path)
    assert not (tmp_path / "rlorinfra.state.json").exists()
    assert State() == LocalBackend(tmp_path / "rlorinfra.state.json").read()[0]


# ------------------------------------------------------------------ the docs show real output

DOCS = [REPO / "README.md", REPO / "docs" / "commands.md", REPO / "docs" / "configuration.md"]
SHOWN_RE = re.compile(r"^\$ (rlorinfra graph[^\n]*)\n(.*?)(?=^\$ |^```)", re.M | re.S)


def documented_graphs() -> list[tuple[Path, str, str]]:
    """(doc, command, the output it shows) for every `rlorinfra graph` of a console block."""
    return [(doc, m.group(1), m.group(2)) for doc in DOCS for m in SHOWN_RE.finditer(doc.read_text())]


def test_the_docs_show_graph_output():
    assert {doc.name for doc, _, _ in documented_graphs()} == {path.name for path in DOCS}


@pytest.mark.parametrize("doc,command,shown", documented_graphs(), ids=lambda v: getattr(v, "name", None))
def test_documented_graph_output_is_what_graph_prints(tmp_path: Path, doc: Path, command: str, shown: str):
    import shlex
    import shutil

    from tests.docs.docblocks import WriteFile, extract_steps

    shutil.copytree(REPO / "examples", tmp_path / "examples", ignore=shutil.ignore_patterns("*.state.json*", ".*"))
    for step in extract_steps(doc.read_text()):
        if isinstance(step, WriteFile):
            (tmp_path / step.path).write_text(step.content)
    assert graph(tmp_path, *shlex.split(command)[2:]) == shown
