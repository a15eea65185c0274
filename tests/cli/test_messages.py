"""Messages that tell the truth (issue: Terraform habits): targeting warnings, all-failed
summaries, 401 hints naming the configured variable, re-import, create_before_destroy."""

from __future__ import annotations

import json

import pytest

from tests.e2e.conftest import jobs_toml, serve_world


@pytest.fixture
def world(tmp_path):
    w = serve_world(tmp_path)
    yield w
    w.server.stop()


def test_target_prints_terraforms_warning_on_plan_and_apply(world):
    world.write_config(jobs_toml("alpha", "beta"))
    plan = world.cli("plan", "--target", "alpha")
    assert plan.exit_code == 0
    assert "Resource targeting is in effect" in plan.stderr
    applied = world.cli("apply", "--auto-approve", "--target", "alpha")
    assert applied.exit_code == 0, applied.output
    assert "Resource targeting is in effect" in applied.stderr
    assert "Applied changes may be incomplete" in applied.stderr
    assert set(world.state()["resources"]["job"]) == {"alpha"}


def test_a_targeted_plan_with_no_changes_says_the_rest_was_not_considered(world):
    world.write_config(jobs_toml("alpha", "beta"))
    assert world.cli("apply", "--auto-approve", "--target", "alpha").exit_code == 0
    plan = world.cli("plan", "--target", "alpha")
    assert "No changes" in plan.stdout
    assert 'Only the targeted jobs ("alpha") were considered' in plan.stdout
    assert "other resources were not" in plan.stdout
    untargeted = world.cli("plan")
    assert "were considered" not in untargeted.stdout


def test_when_every_change_failed_the_summary_does_not_claim_the_others_were_applied(world):
    world.write_config(jobs_toml("alpha", "beta", extra={n: 'extra_args = ["--x"]' for n in ("alpha", "beta")}))
    failed = world.cli("apply", "--auto-approve")  # the customer key may not send extra_args
    assert failed.exit_code == 1
    assert "The other jobs were applied" not in failed.stderr
    assert "No change was applied" in failed.stderr


def test_when_some_changes_failed_the_summary_says_the_others_were_applied(world):
    world.write_config(jobs_toml("alpha", "beta", extra={"beta": 'extra_args = ["--x"]'}))
    failed = world.cli("apply", "--auto-approve")
    assert failed.exit_code == 1
    assert "The other jobs were applied and recorded" in failed.stderr


def test_a_401_names_the_variable_the_config_names(world):
    world.write_config(jobs_toml("alpha"))
    from tests.conftest import run_cli
    from tests.e2e.conftest import KEY_ENV

    result = run_cli(["plan", "-f", str(world.config)], env={KEY_ENV: "wrong-key-123", "NO_COLOR": "1"})
    assert result.exit_code == 1
    assert KEY_ENV in result.stderr and "FIREWORKS_API_KEY" not in result.stderr
    assert "wrong-key-123" not in result.output


def test_create_before_destroy_progress_names_the_replaced_job_and_uses_the_plans_symbol(world):
    cbd = "create_before_destroy = true"
    world.write_config(jobs_toml("alpha", extra={"alpha": cbd}))
    assert world.cli("apply", "--auto-approve").exit_code == 0
    old_id = world.state()["resources"]["job"]["alpha"]["job_id"]
    world.write_config(jobs_toml("alpha", extra={"alpha": cbd + "\nlearning_rate = 2e-5"}))
    applied = world.cli("apply", "--auto-approve", "--json")
    assert applied.exit_code == 0, applied.output
    events = [json.loads(line) for line in applied.stdout.splitlines() if line.startswith("{")]
    deleting = [e for e in events if e.get("type") == "event" and e.get("message") == "delete_old"]
    assert deleting and deleting[0]["job_id"] == old_id
    lines = world.cli("plan").stdout  # nothing left; the text view below is checked through LineView
    assert "No changes" in lines
