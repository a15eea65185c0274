"""The plan flow hands the declared deployments to refresh, and to the planner once their kind is registered."""

from __future__ import annotations

from pathlib import Path
from types import MappingProxyType

import pytest

from rlorinfra.config.load import load_config
from rlorinfra.model.address import Kind
from rlorinfra.operations import PlanRequest, Workspace, build_plan
from rlorinfra.operations.planning import declared_by_kind
from rlorinfra.plan import kinds
from tests.cli.conftest import write_quickstart

DEPLOYMENT = """
[deployments.rollout]
base_model = "accounts/fireworks/models/qwen3-8b"
hot_load_trainer = "grpo-policy-trainer"
"""


@pytest.fixture
def ws(tmp_path: Path):
    path = write_quickstart(tmp_path)
    path.write_text(path.read_text() + DEPLOYMENT)
    workspace = Workspace(config=load_config(path, env={}), api_key=None)
    yield workspace
    workspace.close()


def test_refresh_in_the_plan_flow_reads_the_deployments_the_config_declares(ws):
    # Someone else's deployment on the account: only a deployment read (a LIST, nothing known yet) shows it.
    ws.client().create_deployment(
        "other", {"base_model": "accounts/fireworks/models/qwen3-8b", "accelerator_type": "NVIDIA_H100_80GB"}
    )
    outcome = build_plan(ws, ws.store.read(), PlanRequest())
    assert set(outcome.live.deployments) == {"other"} and outcome.live.listed_deployments == 1


def test_the_declared_deployments_reach_the_planner_only_through_a_registered_kind(ws, monkeypatch):
    monkeypatch.setattr(kinds, "KINDS", MappingProxyType({Kind.JOB: kinds.KINDS[Kind.JOB]}))
    assert declared_by_kind(ws) == {}
    registered = MappingProxyType({Kind.JOB: kinds.KINDS[Kind.JOB], Kind.DEPLOYMENT: kinds.KINDS[Kind.JOB]})
    monkeypatch.setattr(kinds, "KINDS", registered)
    assert declared_by_kind(ws) == {Kind.DEPLOYMENT: ws.config.deployments}
    assert set(ws.config.deployments) == {"rollout"}
