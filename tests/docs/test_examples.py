"""The example configs validate, the quickstart applies, and the CI drift workflow works.

PyYAML is not a dependency, so the workflow is checked structurally (and fully parsed
only when PyYAML happens to be installed). Its summary logic lives in
``examples/ci/drift_summary.py``, which runs here on a real ``plan --json`` output.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from rlorinfra.config.fields import JOB_RULES
from rlorinfra.config.load import CONTROL_PLANE_KEYS, EMULATOR_KEYS, STATE_KEYS
from tests.conftest import run_cli

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"
WORKFLOW = EXAMPLES / "ci" / "github-actions-drift.yml"
SUMMARY_SCRIPT = EXAMPLES / "ci" / "drift_summary.py"
CONFIGS = sorted(EXAMPLES.glob("*.toml"))


def _fast_copy(name: str, folder: Path) -> Path:
    """A copy of an example with emulator provisioning made fast."""
    text = (EXAMPLES / name).read_text()
    text = re.sub(r"(?m)^provision_seconds\s*=\s*[0-9.]+", "provision_seconds = 0.1", text)
    path = folder / name
    path.write_text(text)
    return path


def test_the_promised_examples_exist():
    names = {path.name for path in CONFIGS}
    assert {"quickstart.toml", "grpo.toml", "lora-sweep.toml", "manual-infra.toml"} <= names
    assert WORKFLOW.exists() and SUMMARY_SCRIPT.exists()


@pytest.mark.parametrize("config", CONFIGS, ids=lambda path: path.name)
def test_example_config_validates(config: Path):
    result = run_cli(["validate", "-f", str(config)])
    assert result.exit_code == 0, result.output
    assert "Success! The configuration is valid." in result.stdout


def test_grpo_example_is_the_whole_environment():
    """Policy trainer on a shape, forward-only reference, and the rollout deployment hot-loading the policy."""
    from rlorinfra.config.load import load_config
    from rlorinfra.config.model import ShapeSource

    config = load_config(EXAMPLES / "grpo.toml", env={})
    policy, reference = config.jobs["grpo-policy"], config.jobs["grpo-reference"]
    assert policy.training_shape and not policy.forward_only
    assert policy.hot_load_deployment_id is None, "the deprecated per-deployment scope must not be mixed in"
    assert reference.forward_only and reference.training_shape
    rollout = config.deployments["grpo-rollout"]
    assert rollout.hot_load_trainer == "grpo-policy" and rollout.depends_on == ("job.grpo-policy",)
    assert rollout.shape_source is ShapeSource.TRAINER and rollout.needs_trainer_shape  # shape from the trainer
    assert rollout.base_model == policy.base_model


def test_grpo_example_graph_shows_the_dependency(tmp_path: Path):
    config = tmp_path / "grpo.toml"
    config.write_text((EXAMPLES / "grpo.toml").read_text())
    result = run_cli(["graph", "-f", str(config)])
    assert result.exit_code == 0, result.output
    assert '  "deployment.grpo-rollout" -> "job.grpo-policy";\n' in result.stdout
    assert '"job.grpo-reference"' in result.stdout


def test_lora_sweep_shares_defaults_and_manual_infra_sets_hardware():
    from rlorinfra.config.load import load_config

    sweep = load_config(EXAMPLES / "lora-sweep.toml", env={}).jobs
    assert len(sweep) >= 3 and all(job.lora_rank > 0 for job in sweep.values())
    assert len({job.base_model for job in sweep.values()}) == 1
    manual_config = load_config(EXAMPLES / "manual-infra.toml", env={})
    manual = manual_config.jobs
    assert manual and all(
        job.path == "manual" and job.accelerator_type and job.node_count and job.skip_validations
        for job in manual.values()
    )
    # The manual path needs a superuser key, which the embedded emulator lacks: a served one.
    assert manual_config.control_plane.url.startswith("http://127.0.0.1:")
    assert "--superuser-key" in (EXAMPLES / "manual-infra.toml").read_text()


def test_quickstart_applies_on_the_embedded_emulator(tmp_path: Path):
    config = _fast_copy("quickstart.toml", tmp_path)
    applied = run_cli(["apply", "-f", str(config), "--auto-approve"])
    assert applied.exit_code == 0, applied.output
    assert "Apply complete! Resources: 2 created" in applied.stdout
    assert run_cli(["plan", "-f", str(config), "--detailed-exitcode"]).exit_code == 0
    destroyed = run_cli(["destroy", "-f", str(config), "--auto-approve"])
    assert destroyed.exit_code == 0, destroyed.output


# ------------------------------------------------------------------ the CI workflow


def test_workflow_is_structurally_sound():
    text = WORKFLOW.read_text()
    assert "\t" not in text, "YAML forbids tabs for indentation"
    top = [line.split(":")[0] for line in text.splitlines() if line and not line.startswith((" ", "#"))]
    assert top == ["name", "on", "permissions", "concurrency", "jobs"]
    for needle in (
        "schedule:",
        "cron:",
        "secrets.FIREWORKS_API_KEY",
        "--detailed-exitcode --json",
        "GITHUB_STEP_SUMMARY",
        "drift_summary.py",
        'if [ "$code" -eq 1 ]',
        "exit 1",
        "steps.plan.outputs.exitcode == '2'",
    ):
        assert needle in text, needle
    assert "fw_" not in text, "no key in the workflow"


def test_workflow_parses_as_yaml():
    import yaml

    document = yaml.safe_load(WORKFLOW.read_text())
    triggers = document.get("on", document.get(True))  # YAML 1.1 reads a bare `on` as true
    assert triggers["schedule"][0]["cron"]
    steps = document["jobs"]["drift"]["steps"]
    plan_step = next(step for step in steps if step.get("id") == "plan")
    assert "rlorinfra plan" in plan_step["run"]
    assert plan_step["env"]["FIREWORKS_API_KEY"] == "${{ secrets.FIREWORKS_API_KEY }}"


def _plan_step_script() -> str:
    """The shell of the workflow's plan step (the `run: |` block), dedented."""
    lines = WORKFLOW.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip() == "id: plan")
    run = next(i for i in range(start, len(lines)) if lines[i].strip() == "run: |")
    indent = len(lines[run + 1]) - len(lines[run + 1].lstrip())
    body = []
    for line in lines[run + 1 :]:
        if line.strip() and len(line) - len(line.lstrip()) < indent:
            break
        body.append(line[indent:])
    return "\n".join(body) + "\n"


def _drifted_world(folder: Path) -> Path:
    """The quickstart applied, then one job preempted on the emulator."""
    config = _fast_copy("quickstart.toml", folder)
    assert run_cli(["apply", "-f", str(config), "--auto-approve"]).exit_code == 0
    job_id = json.loads(run_cli(["output", "grpo-policy-trainer", "-f", str(config), "--json"]).stdout)["job_id"]
    assert run_cli(["control-plane", "preempt", job_id, "-f", str(config)]).exit_code == 0
    return config


def _run_plan_step(folder: Path, config: Path) -> tuple[subprocess.CompletedProcess, Path, Path]:
    """Run the workflow's plan step as GitHub would (bash -e), with rlorinfra on PATH."""
    bin_dir = folder / "bin"
    bin_dir.mkdir(exist_ok=True)
    for name, body in (("rlorinfra", '-m rlorinfra "$@"'), ("python3", '"$@"')):
        shim = bin_dir / name
        shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" {body}\n')
        shim.chmod(0o755)
    (folder / ".github" / "rlorinfra").mkdir(parents=True, exist_ok=True)
    shutil.copy(SUMMARY_SCRIPT, folder / ".github" / "rlorinfra" / "drift_summary.py")
    summary, output = folder / "summary.md", folder / "github_output"
    env = {
        "PATH": f"{bin_dir}:/usr/bin:/bin",
        "RLORINFRA_CONFIG": str(config),
        "GITHUB_STEP_SUMMARY": str(summary),
        "GITHUB_OUTPUT": str(output),
        "NO_COLOR": "1",
        "PYTHONPATH": str(REPO),
        "HOME": str(folder),
    }
    result = subprocess.run(
        ["bash", "-e", "-c", _plan_step_script()], cwd=folder, env=env, capture_output=True, text=True, timeout=120
    )
    return result, summary, output


def test_workflow_plan_step_reports_drift_in_the_job_summary(tmp_path: Path):
    config = _drifted_world(tmp_path)
    result, summary, output = _run_plan_step(tmp_path, config)
    assert result.returncode == 0, result.stderr
    assert "exitcode=2" in output.read_text()
    assert "::warning::" in result.stdout
    report = summary.read_text()
    assert "## rlorinfra: drift detected (1 job(s) changed outside rlorinfra)" in report
    assert "| grpo-policy-trainer | preempted | JOB_STATE_RUNNING | JOB_STATE_FAILED |" in report
    assert "| grpo-policy-trainer | resume | JOB_STATE_FAILED: pod preempted |" in report


def test_workflow_plan_step_passes_without_drift(tmp_path: Path):
    config = _fast_copy("quickstart.toml", tmp_path)
    assert run_cli(["apply", "-f", str(config), "--auto-approve"]).exit_code == 0
    result, summary, output = _run_plan_step(tmp_path, config)
    assert result.returncode == 0, result.stderr
    assert "exitcode=0" in output.read_text()
    assert "no drift" in summary.read_text()


def test_workflow_plan_step_fails_on_errors(tmp_path: Path):
    config = tmp_path / "broken.toml"
    config.write_text("[jobs.x]\nlora_rank = -1\n")
    result, summary, output = _run_plan_step(tmp_path, config)
    assert result.returncode == 1
    assert "exitcode=1" in output.read_text()
    assert "::error::" in result.stdout
    assert not summary.exists()


def test_summary_script_on_a_pending_create(tmp_path: Path):
    config = _fast_copy("quickstart.toml", tmp_path)
    plan = run_cli(["plan", "-f", str(config), "--json"])
    (tmp_path / "plan.json").write_text(plan.stdout)
    result = subprocess.run(
        [sys.executable, str(SUMMARY_SCRIPT), str(tmp_path / "plan.json")], capture_output=True, text=True, check=True
    )
    assert "changes pending" in result.stdout
    assert "| grpo-reference-trainer | create |" in result.stdout


# ------------------------------------------------------------------ configuration reference


def test_configuration_reference_documents_every_key():
    text = (REPO / "docs" / "configuration.md").read_text()
    for name, rule in JOB_RULES.items():
        assert re.search(rf"^\| `{name}` \| [^|]+ \| [^|]+ \| {re.escape(rule.path)} \|", text, re.M), (
            f"docs/configuration.md: field {name} missing or its path is not {rule.path!r}"
        )
    for key in (*CONTROL_PLANE_KEYS, *EMULATOR_KEYS, *STATE_KEYS):
        if key != "emulator":
            assert f"| `{key}` |" in text, f"docs/configuration.md does not document {key}"


def test_configuration_reference_lists_no_unknown_job_fields():
    text = (REPO / "docs" / "configuration.md").read_text()
    section = text[text.index("### Fields") : text.index("## Validation")]
    documented = set(re.findall(r"^\| `([a-z_]+)` \|", section, re.M))
    assert documented == set(JOB_RULES)


def _deployment_rows() -> dict[str, str]:
    """Field -> its "changing it" cell, from the deployment fields table of docs/configuration.md."""
    text = (REPO / "docs" / "configuration.md").read_text()
    section = text[text.index("### Deployment fields") : text.index("### Dependencies")]
    return dict(re.findall(r"^\| `([a-z_]+)` \| [^|]+ \| [^|]+ \| ([^|]+) \|", section, re.M))


def test_configuration_reference_documents_every_deployment_field_and_what_changing_it_does():
    from rlorinfra.config.deployments import DEPLOYMENT_RULES
    from rlorinfra.config.model import DEPLOYMENT_LIFECYCLE_FIELDS
    from rlorinfra.model.deployments import IN_PLACE_FIELDS

    rows = _deployment_rows()
    assert set(rows) == set(DEPLOYMENT_RULES)
    # The config field's name on the wire, where it differs (model/deployments.py spec keys).
    spec_key = {"hot_load_trainer": "hot_load_trainer_job", "hot_load_transition": "hot_load_transition_type"}
    for name, cell in rows.items():
        if name in DEPLOYMENT_LIFECYCLE_FIELDS:
            expected = "never (lifecycle)"
        elif spec_key.get(name, name) in IN_PLACE_FIELDS:
            expected = "updated in place"
        else:
            expected = "replaces it"
        assert cell.strip().startswith(expected), f"docs/configuration.md: {name}: {cell.strip()!r}, not {expected!r}"
