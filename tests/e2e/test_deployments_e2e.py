"""The GRPO environment end to end: a policy trainer, a reference trainer and the rollout
deployment hot-loading the policy, on the emulator served over a real loopback socket, driven
by ``python -m rlorinfra`` subprocesses.

Checked from the emulator's own rows (its SQLite file), not from our client: the deployment is
created only once its trainer runs, a replaced trainer's deployment keeps its ID and is
re-attached, a resumed trainer keeps the link, and destroy deletes the deployment first. Every
step ends with a clean ``plan --detailed-exitcode``.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.e2e.conftest import API_KEY, KEY_ENV, World, serve_world

GRPO = """
[jobs.grpo-policy]
base_model = "accounts/fireworks/models/qwen3-8b"
training_shape = "ts-qwen3-8b-policy"
lora_rank = 16

[jobs.grpo-reference]
base_model = "accounts/fireworks/models/qwen3-8b"
training_shape = "ts-qwen3-8b-policy"
forward_only = true

[deployments.grpo-rollout]
base_model = "accounts/fireworks/models/qwen3-8b"
hot_load_trainer = "grpo-policy"
min_replica_count = 1
max_replica_count = 2
"""


@pytest.fixture
def grpo(tmp_path):
    """A served emulator and a workspace declaring the GRPO environment."""
    world = serve_world(tmp_path)
    world.write_config(GRPO)
    yield world
    world.server.stop()


def rlorinfra(world: World, *args: str) -> subprocess.CompletedProcess[str]:
    """One real CLI run against the world's config (the key only in the environment)."""
    env = {**os.environ, KEY_ENV: API_KEY, "NO_COLOR": "1"}
    cmd = [sys.executable, "-m", "rlorinfra", *args, "-f", str(world.config)]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=180)


def ok(world: World, *args: str) -> str:
    """Run and insist on exit 0; the standard output."""
    result = rlorinfra(world, *args)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def assert_clean(world: World, *extra: str) -> None:
    """``plan --detailed-exitcode`` says nothing is left to do."""
    result = rlorinfra(world, "plan", "--detailed-exitcode", *extra)
    assert result.returncode == 0, result.stdout + result.stderr


def rows(world: World, sql: str, *params: object) -> list[sqlite3.Row]:
    """Rows of the emulator's own database (its clock, its truth)."""
    db = sqlite3.connect(Path(world.store.db_path))  # type: ignore[attr-defined]
    db.row_factory = sqlite3.Row
    try:
        return db.execute(sql, params).fetchall()
    finally:
        db.close()


def live_deployment(world: World, deployment_id: str) -> dict:
    import httpx

    with httpx.Client(base_url=world.url, headers={"X-Api-Key": API_KEY}) as http:
        response = http.get(f"/v1/accounts/local/deployments/{deployment_id}")
    return response.json() if response.status_code == 200 else {}


def job_id(world: World, name: str) -> str:
    return world.state()["resources"]["job"][name]["job_id"]


def events(stdout: str) -> list[dict]:
    return [e for e in map(json.loads, stdout.splitlines()) if e.get("type") == "event"]


def test_apply_creates_the_deployment_after_its_trainer_runs(grpo):
    plan = rlorinfra(grpo, "plan", "--detailed-exitcode")
    assert plan.returncode == 2, plan.stdout + plan.stderr
    assert "# deployment.grpo-rollout will be created" in plan.stdout
    assert "# depends on job.grpo-policy" in plan.stdout
    assert plan.stdout.index("# job.grpo-policy will be created") < plan.stdout.index("deployment.grpo-rollout")

    ok(grpo, "apply", "--auto-approve")
    policy = job_id(grpo, "grpo-policy")
    record = grpo.state()["resources"]["deployment"]["grpo-rollout"]
    assert record["phase"] == "ready" and record["depends_on"] == ["job.grpo-policy"]
    assert record["hot_load_trainer_job"] == f"accounts/local/rlorTrainerJobs/{policy}"
    live = live_deployment(grpo, "grpo-rollout")
    assert live["state"] == "READY" and live["hotLoadTrainerJob"] == record["hot_load_trainer_job"]
    assert live["hotLoadBucketUrl"].rstrip("/").endswith(f"trainer-{policy}")

    (running_since,) = rows(grpo, "SELECT held_since FROM jobs WHERE job_id = ?", policy)
    (created,) = rows(grpo, "SELECT create_time FROM deployments WHERE deployment_id = 'grpo-rollout'")
    assert running_since["held_since"] is not None
    assert created["create_time"] >= running_since["held_since"]  # created only once the trainer ran
    assert_clean(grpo)


def test_replacing_the_trainer_reattaches_the_same_deployment(grpo):
    ok(grpo, "apply", "--auto-approve")
    old = job_id(grpo, "grpo-policy")
    (before,) = rows(grpo, "SELECT create_time FROM deployments WHERE deployment_id = 'grpo-rollout'")

    plan = ok(grpo, "plan", "--replace", "grpo-policy")
    assert "# deployment.grpo-rollout will be updated in-place" in plan
    assert '~ hot_load_trainer = "grpo-policy" (re-attach)' in plan
    assert plan.index("# job.grpo-policy") < plan.index("# deployment.grpo-rollout")

    ok(grpo, "apply", "--auto-approve", "--replace", "grpo-policy")
    new = job_id(grpo, "grpo-policy")
    assert new != old
    live = live_deployment(grpo, "grpo-rollout")
    assert live["state"] == "READY"
    assert live["hotLoadTrainerJob"] == f"accounts/local/rlorTrainerJobs/{new}"
    (after,) = rows(grpo, "SELECT create_time FROM deployments WHERE deployment_id = 'grpo-rollout'")
    assert after["create_time"] == before["create_time"]  # the same deployment: never deleted
    assert grpo.state()["resources"]["deployment"]["grpo-rollout"]["hot_load_trainer_job"].endswith(new)
    assert_clean(grpo)


def test_a_preempted_trainer_is_resumed_and_the_link_holds(grpo):
    ok(grpo, "apply", "--auto-approve")
    policy = job_id(grpo, "grpo-policy")
    link = live_deployment(grpo, "grpo-rollout")["hotLoadTrainerJob"]
    grpo.store.preempt(policy)  # type: ignore[attr-defined]

    plan = rlorinfra(grpo, "plan", "--detailed-exitcode")
    assert plan.returncode == 2
    assert "# job.grpo-policy will be resumed" in plan.stdout
    assert "deployment.grpo-rollout will" not in plan.stdout  # nothing to re-attach: same job ID

    ok(grpo, "apply", "--auto-approve")
    assert job_id(grpo, "grpo-policy") == policy
    assert live_deployment(grpo, "grpo-rollout")["hotLoadTrainerJob"] == link
    assert_clean(grpo)


def test_destroy_deletes_the_deployment_before_its_trainer(grpo):
    ok(grpo, "apply", "--auto-approve")
    out = ok(grpo, "destroy", "--auto-approve", "--json")
    done = [(e["name"], e["event"]) for e in events(out)]  # names differ across kinds here
    started = [name for name, kind in done if kind == "started"]
    finished = [name for name, kind in done if kind in ("done", "ready")]
    assert "grpo-rollout" in finished and "grpo-policy" in started
    # The trainer's delete starts only after the deployment's delete finished.
    assert done.index(("grpo-rollout", finished_kind(done, "grpo-rollout"))) < done.index(("grpo-policy", "started"))
    assert live_deployment(grpo, "grpo-rollout") == {}
    assert grpo.state()["resources"].get("deployment", {}) == {}
    assert_clean(grpo, "--destroy")


def finished_kind(done: list[tuple[str, str]], name: str) -> str:
    return next(kind for n, kind in done if n == name and kind in ("done", "ready"))


def test_removing_both_blocks_deletes_the_deployment_first_from_recorded_edges(grpo):
    ok(grpo, "apply", "--auto-approve")
    policy = job_id(grpo, "grpo-policy")
    grpo.config.write_text(
        textwrap.dedent(f"""
        [control_plane]
        url = "{grpo.url}"
        api_key_env = "{KEY_ENV}"
        """)
    )
    plan = ok(grpo, "plan")
    assert plan.index("# deployment.grpo-rollout will be destroyed") < plan.index("# job.grpo-policy will be destroyed")
    ok(grpo, "apply", "--auto-approve")
    assert live_deployment(grpo, "grpo-rollout") == {}
    (deployment,) = rows(grpo, "SELECT delete_time FROM deployments WHERE deployment_id = 'grpo-rollout'")
    (job,) = rows(grpo, "SELECT update_time, state FROM jobs WHERE job_id = ?", policy)
    assert deployment["delete_time"] is not None and deployment["delete_time"] <= job["update_time"]
    assert_clean(grpo)


def test_import_generates_a_block_that_plans_clean(grpo):
    ok(grpo, "apply", "--auto-approve")
    ok(grpo, "state", "rm", "deployment.grpo-rollout")
    untracked = rlorinfra(grpo, "plan")
    assert untracked.returncode == 1 and "rlorinfra import deployment.grpo-rollout grpo-rollout" in untracked.stderr

    block = ok(grpo, "import", "deployment.grpo-rollout", "grpo-rollout", "--generate-config")
    assert block.startswith("[deployments.grpo-rollout]") and 'hot_load_trainer = "grpo-policy"' in block
    jobs_only = GRPO[: GRPO.index("[deployments.grpo-rollout]")]
    grpo.config.write_text(f'[control_plane]\nurl = "{grpo.url}"\napi_key_env = "{KEY_ENV}"\n{jobs_only}\n{block}')
    assert_clean(grpo)
    assert "deployments match the configuration" in ok(grpo, "plan")


def test_sigkill_while_the_deployment_is_created_never_duplicates_it(grpo):
    import signal
    import time

    env = {**os.environ, KEY_ENV: API_KEY, "NO_COLOR": "1"}
    cmd = [sys.executable, "-m", "rlorinfra", "apply", "--auto-approve", "-f", str(grpo.config)]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    recorded = False
    while time.monotonic() < deadline and not recorded:
        try:
            recorded = "grpo-rollout" in grpo.state()["resources"].get("deployment", {})
        except (FileNotFoundError, json.JSONDecodeError):
            pass
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)  # the ID is recorded; the POST may or may not have landed
    proc.wait(timeout=10)
    assert recorded

    ok(grpo, "apply", "--auto-approve")
    deployments = rows(grpo, "SELECT deployment_id, state FROM deployments")
    assert [r["deployment_id"] for r in deployments] == ["grpo-rollout"]
    jobs = rows(grpo, "SELECT display_name FROM jobs WHERE state NOT IN ('JOB_STATE_DELETED', 'JOB_STATE_DELETING')")
    assert sorted(r["display_name"] for r in jobs) == ["grpo-policy", "grpo-reference"]
    assert live_deployment(grpo, "grpo-rollout")["hotLoadTrainerJob"].endswith(job_id(grpo, "grpo-policy"))
    assert_clean(grpo)
