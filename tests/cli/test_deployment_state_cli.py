"""`output`, `state list|show|rm|mv` and `show` with deployments in state (no control plane is contacted)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rlorinfra.model.address import Address, Kind
from rlorinfra.state.backends.local import LocalBackend
from rlorinfra.state.model import DeploymentRecord, JobRecord
from tests.cli.conftest import write_quickstart
from tests.conftest import run_cli

LINK = "accounts/local/rlorTrainerJobs/policy-1"
BUCKET = "gs://fw-hot-load/local/policy-1/"
JOB = JobRecord(job_id="policy-1", job_name=LINK, endpoint="http://e/policy-1", spec={}, phase="ready")
DEPLOYMENT = DeploymentRecord(
    deployment_id="rollout",
    deployment_name="accounts/local/deployments/rollout",
    spec={"base_model": "accounts/fireworks/models/qwen3-8b", "hot_load_trainer": "policy"},
    phase="ready",
    observed_state="READY",
    hot_load_trainer_job=LINK,
    hot_load_bucket_url=BUCKET,
    depends_on=(Address.job("policy"),),
)


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """The quickstart folder with a state tracking job "policy" and deployment "rollout" hot-loading it."""
    write_quickstart(tmp_path)
    backend = LocalBackend(tmp_path / "rlorinfra.state.json")
    state, version = backend.read()
    state = state.with_job("policy", JOB).with_record(Address(Kind.DEPLOYMENT, "rollout"), DEPLOYMENT)
    backend.write(state, version)
    return tmp_path


def _state(folder: Path):
    return LocalBackend(folder / "rlorinfra.state.json").read()[0]


def test_output_json_lists_the_deployment_by_address_beside_the_jobs(folder):
    result = run_cli(["output", "--json"], cwd=folder)
    assert result.exit_code == 0, result.output
    values = json.loads(result.stdout)
    assert values["policy"] == {"job_id": "policy-1", "job_name": LINK, "endpoint": "http://e/policy-1"}
    assert values["deployment.rollout"] == {
        "address": "deployment.rollout",
        "deployment_id": "rollout",
        "deployment_name": "accounts/local/deployments/rollout",
        "state": "READY",
        "hot_load_bucket_url": BUCKET,
        "hot_load_trainer_job": LINK,
    }


def test_output_text_and_one_deployment(folder):
    text = run_cli(["output"], cwd=folder)
    assert text.exit_code == 0 and "deployment.rollout = {\n  address" in text.stdout
    assert f'hot_load_bucket_url  = "{BUCKET}"' in text.stdout
    one = run_cli(["output", "deployment.rollout", "--json"], cwd=folder)
    assert one.exit_code == 0 and json.loads(one.stdout)["state"] == "READY"
    bare = run_cli(["output", "rollout", "--raw"], cwd=folder)  # a bare name resolves to the one tracked
    assert bare.exit_code == 0 and bare.stdout == "accounts/local/deployments/rollout\n"
    unknown = run_cli(["output", "deployment.nope"], cwd=folder)
    assert unknown.exit_code == 1 and "No deployment 'nope' in state" in unknown.stderr
    assert "policy, deployment.rollout" in unknown.stderr


def test_state_list_and_show(folder):
    listed = run_cli(["state", "list"], cwd=folder)
    assert listed.exit_code == 0 and listed.stdout == "policy\ndeployment.rollout\n"
    shown = run_cli(["state", "show", "deployment.rollout"], cwd=folder)
    assert shown.exit_code == 0, shown.output
    assert shown.stdout.startswith('# deployment.rollout:\ndeployment "rollout" {')
    lines = [line.split(" = ", 1) for line in shown.stdout.splitlines() if " = " in line]
    fields = {key.strip(): json.loads(value) for key, value in lines if not value.endswith("{")}
    assert fields["hot_load_trainer_job"] == LINK and fields["hot_load_bucket_url"] == BUCKET
    assert fields["depends_on"] == ["job.policy"] and fields["hot_load_trainer"] == "policy"
    as_json = run_cli(["state", "show", "deployment.rollout", "--json"], cwd=folder)
    assert json.loads(as_json.stdout) == DEPLOYMENT.to_dict()
    everything = run_cli(["show"], cwd=folder)
    assert everything.exit_code == 0 and 'job "policy" {' in everything.stdout
    assert 'deployment "rollout" {' in everything.stdout


def test_state_rm_of_a_deployment_forgets_only_it_and_says_how_to_import_it(folder):
    result = run_cli(["state", "rm", "deployment.rollout"], cwd=folder)
    assert result.exit_code == 0, result.output
    assert "Removed deployment.rollout" in result.stdout and "1 deployment(s)" in result.stdout
    assert "rlorinfra import deployment.rollout rollout" in result.stdout
    state = _state(folder)
    assert set(state.deployments) == set() and set(state.jobs) == {"policy"}


def test_state_mv_of_a_deployment_is_refused_and_changes_nothing(folder):
    before = (folder / "rlorinfra.state.json").read_bytes()
    renamed = run_cli(["state", "mv", "deployment.rollout", "deployment.other"], cwd=folder)
    assert renamed.exit_code == 1 and "a deployment's name is its deployment ID" in renamed.stderr
    across = run_cli(["state", "mv", "policy", "deployment.policy"], cwd=folder)
    assert across.exit_code == 1 and "different kinds of resource" in across.stderr
    assert (folder / "rlorinfra.state.json").read_bytes() == before
    moved = run_cli(["state", "mv", "job.policy", "job.policy-2"], cwd=folder)  # jobs still move, addressed too
    assert moved.exit_code == 0, moved.output
    assert set(_state(folder).jobs) == {"policy-2"}


def test_an_ambiguous_bare_name_asks_for_the_address(folder):
    backend = LocalBackend(folder / "rlorinfra.state.json")
    state, version = backend.read()
    twin = DeploymentRecord(deployment_id="policy", deployment_name="accounts/local/deployments/policy", spec={})
    backend.write(state.with_record(Address(Kind.DEPLOYMENT, "policy"), twin), version)
    result = run_cli(["state", "show", "policy"], cwd=folder)
    assert result.exit_code == 1 and "ambiguous" in result.stderr and "`deployment.policy`" in result.stderr
    assert run_cli(["state", "show", "job.policy"], cwd=folder).exit_code == 0


def test_state_commands_complete_deployment_addresses(folder):
    from tests.cli.test_prompts_and_completion import _complete

    assert "deployment.rollout" in _complete("rlorinfra state show ", folder)
    assert _complete("rlorinfra output deployment.", folder) == ["deployment.rollout"]
