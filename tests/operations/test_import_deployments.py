"""`import deployment.ID ID` against the embedded emulator: the record, its trainer, and `--generate-config`."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from rlorinfra.apply import ApplyOptions
from rlorinfra.config.load import load_config, load_config_text
from rlorinfra.config.write import render_deployment_toml
from rlorinfra.errors import PlanError
from rlorinfra.model.address import Address
from rlorinfra.model.deployments import trainer_link
from rlorinfra.operations import (
    PlanRequest,
    Workspace,
    generated_deployment_block,
    run_apply,
    run_import_deployment,
    state_rm,
)
from rlorinfra.operations.importing import UNREAD_DEPLOYMENT_FIELDS
from tests.cli.conftest import write_quickstart
from tests.conftest import run_cli
from tests.operations.test_flows import RecordingUI

FAST = ApplyOptions(poll_min_s=0.01, poll_max_s=0.05)
POLICY = "grpo-policy-trainer"
MODEL = "accounts/fireworks/models/qwen3-8b"
SHAPE = "accounts/fireworks/deploymentShapes/qwen3-8b-policy"


@pytest.fixture
def ws(tmp_path: Path):
    """The quickstart trainers applied on the embedded emulator, and a deployment "rollout" hot-loading the policy."""
    workspace = Workspace(config=load_config(write_quickstart(tmp_path), env={}), api_key=None)
    run_apply(workspace, PlanRequest(), RecordingUI(), FAST, auto_approve=True)
    job_id = workspace.store.read().jobs[POLICY].job_id
    spec = {
        "base_model": MODEL,
        "deployment_shape": SHAPE,
        "min_replica_count": 1,
        "max_replica_count": 2,
        "description": "rollouts",
        "hot_load_transition_type": "SYNC",
        "hot_load_trainer_job": trainer_link(workspace.client().account_id, job_id),
    }
    workspace.client().create_deployment("rollout", spec)
    time.sleep(0.15)  # provision_seconds = 0.1: READY by now
    yield workspace
    workspace.close()


def test_import_records_the_deployment_in_config_terms_and_is_idempotent(ws):
    job_id = ws.store.read().jobs[POLICY].job_id
    first = run_import_deployment(ws, "rollout", "rollout")
    record = first.record
    assert not first.already_managed and first.trainer_note == ""
    assert record.spec == {
        "base_model": MODEL,
        "deployment_shape": record.deployment_shape_version,
        "description": "rollouts",
        "hot_load_trainer": POLICY,  # the link, as the display name of the job state manages
        "hot_load_transition_type": "SYNC",
        "max_replica_count": 2,
        "min_replica_count": 1,
    }
    assert record.deployment_shape_version.startswith(SHAPE + "/versions/")
    assert record.hot_load_trainer_job == trainer_link("local", job_id) and record.hot_load_bucket_url
    assert record.depends_on == (Address.job(POLICY),)
    assert (record.phase, record.observed_state) == ("ready", "READY")
    assert record.unread_fields == UNREAD_DEPLOYMENT_FIELDS
    assert ws.store.read().deployment("rollout") == record
    again = run_import_deployment(ws, "rollout", "accounts/local/deployments/rollout")  # a full name is the ID too
    assert again.already_managed and again.record == record


def test_the_name_must_be_the_id(ws):
    with pytest.raises(PlanError) as caught:
        run_import_deployment(ws, "serving", "rollout")
    assert "the NAME must be the ID" in caught.value.summary
    assert "`rlorinfra import deployment.rollout rollout`" in caught.value.detail
    assert ws.store.read().deployments == {}


def test_missing_and_deleted_deployments_are_refused(ws):
    with pytest.raises(PlanError, match="does not exist"):
        run_import_deployment(ws, "nope", "nope")
    ws.client().delete_deployment("rollout")
    with pytest.raises(PlanError, match=r"is deleted \(DELET"):
        run_import_deployment(ws, "rollout", "rollout")
    assert ws.store.read().deployments == {}


def test_a_trainer_state_does_not_manage_is_named_and_left_out(ws):
    job_id = ws.store.read().jobs[POLICY].job_id
    state_rm(ws, (POLICY,))
    imported = run_import_deployment(ws, "rollout", "rollout")
    assert "hot_load_trainer" not in imported.record.spec and imported.record.depends_on == ()
    assert imported.record.hot_load_trainer_job == trainer_link("local", job_id)  # still known: drift compares it
    assert f"hot-loads trainer accounts/local/rlorTrainerJobs/{job_id}" in imported.trainer_note
    assert "does not manage" in imported.trainer_note


def test_the_generated_block_validates_and_reads_back_to_the_recorded_spec(ws):
    record = run_import_deployment(ws, "rollout", "rollout").record
    block = generated_deployment_block(record)
    assert block.startswith("[deployments.rollout]\n") and 'hot_load_trainer = "grpo-policy-trainer"' in block
    assert 'hot_load_transition = "sync"' in block and "accept_shapeless_risk, disable" in block
    config = load_config_text(ws.config.path.read_text() + "\n" + block, ws.config.path, {})
    assert config.deployments["rollout"].spec() == record.spec


def test_the_manual_path_reads_back_with_its_acknowledgement(ws):
    ws.client().create_deployment("manual", {"base_model": MODEL, "accelerator_type": "NVIDIA_H100_80GB",
                                             "accept_shapeless_risk": True})  # fmt: skip
    record = run_import_deployment(ws, "manual", "manual").record
    assert record.spec["accept_shapeless_risk"] is True and "accept_shapeless_risk" not in record.unread_fields
    config = load_config_text(ws.config.path.read_text() + "\n" + generated_deployment_block(record),
                              ws.config.path, {})  # fmt: skip
    assert config.deployments["manual"].spec() == record.spec


def test_render_refuses_what_a_table_cannot_hold():
    with pytest.raises(ValueError, match="deployment_shape_from"):
        render_deployment_toml("d", {"base_model": MODEL, "deployment_shape_from": "trainer"})
    with pytest.raises(ValueError, match="hot_load_trainer_job"):
        render_deployment_toml("d", {"base_model": MODEL, "hot_load_trainer_job": "accounts/a/rlorTrainerJobs/j"})
    text = render_deployment_toml("d", {"base_model": MODEL, "annotations": {"b": "2", "a": "1"}},
                                  lifecycle={"prevent_destroy": True, "ttl": 5400})  # fmt: skip
    assert 'ttl = "1h30m"' in text and "prevent_destroy = true" in text and 'a = "1"' in text


def test_cli_import_of_a_deployment(ws):
    folder = ws.config.path.parent
    wrong = run_cli(["import", "deployment.serving", "rollout"], cwd=folder)
    assert wrong.exit_code == 1 and "the NAME must be the ID" in wrong.stderr
    generated = run_cli(["import", "deployment.rollout", "rollout", "--generate-config"], cwd=folder)
    assert generated.exit_code == 0, generated.output
    assert (
        generated.stdout.startswith("[deployments.rollout]\n") and "# Imported deployment.rollout" in generated.stderr
    )
    again = run_cli(["import", "deployment.rollout", "rollout"], cwd=folder)
    assert again.exit_code == 0 and "already managed as deployment.rollout" in again.stdout
    assert "is not declared in" in again.stderr
