"""plan and apply end to end, on the emulator served over a real loopback socket.

Each test drives the CLI exactly as a user would (exit codes, printed text,
the state file) and checks the live jobs on the emulator independently of our
client.
"""

from __future__ import annotations

import json

from tests.e2e.conftest import jobs_toml


def running(world):
    return {j["displayName"]: j for j in world.live_jobs() if j["state"] == "JOB_STATE_RUNNING"}


def apply(world, *extra):
    result = world.cli("apply", "--auto-approve", *extra)
    assert result.exit_code == 0, result.output
    return result


def test_empty_world_plan_exits_2_then_apply_converges_and_plan_exits_0(world):
    world.write_config(jobs_toml("alpha", "beta", "gamma"))
    plan = world.cli("plan", "--detailed-exitcode")
    assert plan.exit_code == 2, plan.output
    assert "Plan: 3 to create, 0 to resume, 0 to replace, 0 to stop, 0 to delete." in plan.stdout

    result = apply(world)
    assert "Apply complete! Resources: 3 created, 0 resumed, 0 replaced, 0 stopped, 0 deleted." in result.stdout
    live = running(world)
    assert sorted(live) == ["alpha", "beta", "gamma"]
    state = world.state()
    for name in ("alpha", "beta", "gamma"):
        record = state["resources"]["job"][name]
        assert live[name]["name"].endswith("/" + record["job_id"])
        assert record["endpoint"] == f"{world.url}/training/v1/rlorTrainerJobs/local/{record['job_id']}"
        assert record["phase"] == "ready"
        assert record["endpoint"] in result.stdout  # outputs follow the summary

    again = world.cli("plan", "--detailed-exitcode")
    assert again.exit_code == 0, again.output
    assert "No changes." in again.stdout


def test_preempted_job_shows_drift_and_is_resumed_with_the_same_id(world):
    world.write_config(jobs_toml("alpha", "beta"))
    apply(world)
    job_id = world.state()["resources"]["job"]["alpha"]["job_id"]
    world.store.preempt(job_id)

    plan = world.cli("plan", "--detailed-exitcode")
    assert plan.exit_code == 2
    assert "Objects have changed outside of rlorinfra" in plan.stdout
    assert "Plan: 0 to create, 1 to resume" in plan.stdout

    result = apply(world)
    assert "1 resumed" in result.stdout
    assert world.state()["resources"]["job"]["alpha"]["job_id"] == job_id
    assert running(world)["alpha"]["name"].endswith(job_id)
    assert world.cli("plan", "--detailed-exitcode").exit_code == 0


def test_out_of_band_delete_is_recreated(world):
    world.write_config(jobs_toml("alpha"))
    apply(world)
    old_id = world.state()["resources"]["job"]["alpha"]["job_id"]
    import httpx

    from tests.e2e.conftest import API_KEY

    httpx.delete(f"{world.url}/v1/accounts/local/rlorTrainerJobs/{old_id}", headers={"X-Api-Key": API_KEY})

    plan = world.cli("plan", "--detailed-exitcode", "--json")
    assert plan.exit_code == 2
    doc = json.loads(plan.stdout)
    assert [c["action"] for c in doc["changes"] if c["name"] == "alpha"] == ["create"]
    assert doc["drift"] and doc["drift"][0]["name"] == "alpha"

    apply(world)
    new_id = world.state()["resources"]["job"]["alpha"]["job_id"]
    assert new_id != old_id
    assert running(world)["alpha"]["name"].endswith(new_id)


def test_changed_field_replaces_and_removed_job_is_deleted(world):
    world.write_config(jobs_toml("alpha", "beta"))
    apply(world)
    old_alpha = world.state()["resources"]["job"]["alpha"]["job_id"]

    world.write_config(jobs_toml("alpha", extra={"alpha": "learning_rate = 3e-5"}))
    plan = world.cli("plan")
    assert "forces replacement" in plan.stdout
    assert "Plan: 0 to create, 0 to resume, 1 to replace, 0 to stop, 1 to delete." in plan.stdout

    result = apply(world)
    assert "1 replaced" in result.stdout and "1 deleted" in result.stdout
    state = world.state()
    assert list(state["resources"]["job"]) == ["alpha"]
    assert state["resources"]["job"]["alpha"]["job_id"] != old_alpha
    assert state["resources"]["job"]["alpha"]["spec"]["learning_rate"] == 3e-5
    assert sorted(j["displayName"] for j in world.live_jobs()) == ["alpha"]


def test_desired_stopped_cancels_and_keeps_the_job(world):
    world.write_config(jobs_toml("alpha"))
    apply(world)
    job_id = world.state()["resources"]["job"]["alpha"]["job_id"]
    world.write_config(jobs_toml("alpha", extra={"alpha": 'desired_state = "stopped"'}))
    result = apply(world)
    assert "1 stopped" in result.stdout
    live = {j["name"].rsplit("/", 1)[-1]: j for j in world.live_jobs()}
    assert live[job_id]["state"] == "JOB_STATE_CANCELLED"
    assert world.cli("plan", "--detailed-exitcode").exit_code == 0


def test_prevent_destroy_refuses_replace_and_destroy(world):
    world.write_config(jobs_toml("alpha", extra={"alpha": "prevent_destroy = true"}))
    apply(world)
    job_id = world.state()["resources"]["job"]["alpha"]["job_id"]
    world.write_config(jobs_toml("alpha", extra={"alpha": "prevent_destroy = true\nlora_rank = 8"}))
    for command in (("apply", "--auto-approve"), ("destroy", "--auto-approve")):
        result = world.cli(*command)
        assert result.exit_code == 1
        assert "prevent_destroy" in result.stderr
        assert "Traceback" not in result.output
    assert [j["name"].rsplit("/", 1)[-1] for j in world.live_jobs()] == [job_id]


def test_saved_plan_applies_once_and_a_stale_one_is_refused(world):
    world.write_config(jobs_toml("alpha"))
    planfile = world.folder / "release.plan"
    assert world.cli("plan", "--out", str(planfile)).exit_code == 0
    assert oct(planfile.stat().st_mode & 0o777) == "0o600"
    result = world.cli("apply", str(planfile))
    assert result.exit_code == 0, result.output
    assert "1 created" in result.stdout

    stale = world.cli("apply", str(planfile))
    assert stale.exit_code == 1
    assert "Saved plan is stale" in stale.stderr
    assert len(world.live_jobs()) == 1


def test_import_with_generated_config_gives_an_empty_plan(world):
    world.write_config(jobs_toml("alpha"))
    apply(world)
    job_id = world.state()["resources"]["job"]["alpha"]["job_id"]
    world.state_path.unlink()  # forget everything: the job is now unmanaged

    world.write_config("")
    generated = world.cli("import", "adopted", job_id, "--generate-config")
    assert generated.exit_code == 0, generated.output
    world.write_config(generated.stdout)
    plan = world.cli("plan", "--detailed-exitcode")
    assert plan.exit_code == 0, plan.output
    assert world.state()["resources"]["job"]["adopted"]["job_id"] == job_id


def test_unmanaged_job_with_declared_name_suggests_import(world):
    world.write_config(jobs_toml("alpha"))
    apply(world)
    job_id = world.state()["resources"]["job"]["alpha"]["job_id"]
    world.state_path.unlink()
    plan = world.cli("plan")
    assert plan.exit_code == 1
    assert f"rlorinfra import alpha {job_id}" in plan.stderr


def test_destroy_leaves_no_live_job(world):
    world.write_config(jobs_toml("alpha", "beta"))
    apply(world)
    result = world.cli("destroy", "--auto-approve")
    assert result.exit_code == 0, result.output
    assert "Destroy complete! Resources: 2 destroyed." in result.stdout
    assert world.live_jobs() == []
    assert world.state()["resources"]["job"] == {}


def test_apply_without_tty_or_approval_is_refused(world):
    world.write_config(jobs_toml("alpha"))
    result = world.cli("apply")
    assert result.exit_code == 1
    assert "--auto-approve" in result.stderr
    assert world.live_jobs() == []


def test_json_events_and_final_summary(world):
    world.write_config(jobs_toml("alpha"))
    result = world.cli("apply", "--auto-approve", "--json")
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in result.stdout.splitlines()]
    kinds = [r["type"] for r in records]
    assert kinds[0] == "plan" and kinds[-1] == "summary"
    events = [r["event"] for r in records if r["type"] == "event"]
    assert "started" in events and "ready" in events
    assert "Apply complete!" in records[-1]["message"]


def test_idle_job_is_drift_and_a_wait_and_apply_fails_it_naming_the_timeout(world):
    world.write_config(jobs_toml("alpha"))
    apply(world)
    world.store.set_idle(world.state()["resources"]["job"]["alpha"]["job_id"])
    plan = world.cli("plan", "--detailed-exitcode")
    assert plan.exit_code == 2, plan.output  # IDLE is not ready (the SDK never treats it as ready)
    assert "became idle" in plan.stdout and "will be waited for" in plan.stdout
    drift = world.cli("plan", "--refresh-only", "--detailed-exitcode", "--json")
    assert drift.exit_code == 2
    assert [d["kind"] for d in json.loads(drift.stdout)["drift"]] == ["idle"]
    waited = world.cli("apply", "--auto-approve", "--timeout", "1")
    assert waited.exit_code == 1, waited.output
    assert "JOB_STATE_IDLE" in waited.stderr and "--timeout" in waited.stderr
    assert world.state()["resources"]["job"]["alpha"]["observed_state"] == "JOB_STATE_IDLE"


def test_unhealthy_running_job_is_drift_and_apply_waits_for_its_health(world):
    world.write_config(jobs_toml("alpha"))
    apply(world)
    job_id = world.state()["resources"]["job"]["alpha"]["job_id"]
    world.store.mark_unhealthy(job_id, True)
    plan = world.cli("plan", "--detailed-exitcode")
    assert plan.exit_code == 2, plan.output
    assert "health check fails" in plan.stdout
    assert world.cli("plan", "--detailed-exitcode", "--no-health-check").exit_code == 0
    failed = world.cli("apply", "--auto-approve", "--timeout", "1")
    assert failed.exit_code == 1 and "health check did not pass" in failed.stderr, failed.output
    world.store.mark_unhealthy(job_id, False)
    apply(world)
    assert world.cli("plan", "--detailed-exitcode").exit_code == 0


def test_import_refuses_bad_ids_taken_jobs_and_bad_names(world):
    world.write_config(jobs_toml("alpha"))
    apply(world)
    job_id = world.state()["resources"]["job"]["alpha"]["job_id"]
    taken = world.cli("import", "dup", job_id)
    assert taken.exit_code == 1 and 'already managed as "alpha"' in taken.stderr
    assert "state mv alpha dup" in taken.stderr
    traversal = world.cli("import", "foo", "..")
    assert traversal.exit_code == 1 and "Invalid job ID" in traversal.stderr
    too_long = world.cli("import", "x" * 80, job_id)
    assert too_long.exit_code == 1 and "at most 63 characters" in too_long.stderr
    assert list(world.state()["resources"]["job"]) == ["alpha"]


def test_saved_plan_cannot_be_combined_with_planning_options(world):
    world.write_config(jobs_toml("alpha", "beta"))
    planfile = world.folder / "d.plan"
    assert world.cli("plan", "--out", str(planfile)).exit_code == 0
    result = world.cli("apply", str(planfile), "--target", "alpha")
    assert result.exit_code == 1 and "--target" in result.output
    assert world.live_jobs() == []


def test_unwritable_state_folder_is_a_clean_error(world):
    world.write_config(jobs_toml("alpha"), extra='\n[state]\npath = "rlorinfra.toml/x.json"\n')
    result = world.cli("plan")
    assert result.exit_code == 1
    assert "Traceback" not in result.output and "Unexpected" not in result.output
    assert "state" in result.stderr.lower()


def test_create_before_destroy_keeps_the_old_job_tracked_until_it_is_gone(world):
    cbd = "create_before_destroy = true"
    world.write_config(jobs_toml("alpha", extra={"alpha": cbd}))
    apply(world)
    old_id = world.state()["resources"]["job"]["alpha"]["job_id"]

    # A replacement the control plane refuses (extra_args needs a superuser key, and
    # the served emulator's key is a customer key): the old job stays running AND tracked.
    world.write_config(jobs_toml("alpha", extra={"alpha": cbd + '\nextra_args = ["--trace"]'}))
    refused = world.cli("apply", "--auto-approve")
    assert refused.exit_code == 1, refused.output
    assert world.state()["resources"]["job"]["alpha"]["job_id"] == old_id
    assert [j["name"].rsplit("/", 1)[-1] for j in world.live_jobs()] == [old_id]

    world.write_config(jobs_toml("alpha", extra={"alpha": cbd + "\nlearning_rate = 2e-5"}))
    apply(world)
    record = world.state()["resources"]["job"]["alpha"]
    assert record["job_id"] != old_id and "deposed_job_id" not in record
    states = {j["name"].rsplit("/", 1)[-1]: j["state"] for j in world.live_jobs()}
    assert states.pop(record["job_id"]) == "JOB_STATE_RUNNING"
    assert set(states.values()) <= {"JOB_STATE_DELETING"}  # the old job is on its way out


def test_a_leftover_deposed_job_is_deleted_by_the_next_apply(world):
    world.write_config(jobs_toml("alpha", "beta"))
    apply(world)
    state = world.state()
    beta_id = state["resources"]["job"]["beta"]["job_id"]
    # As if a create_before_destroy replacement of alpha died before deleting beta's job.
    state["resources"]["job"]["alpha"]["deposed_job_id"] = beta_id
    del state["resources"]["job"]["beta"]
    world.state_path.write_text(json.dumps(state))
    world.write_config(jobs_toml("alpha"))
    plan = world.cli("plan", "--detailed-exitcode")
    assert plan.exit_code == 2 and "deposed" in plan.stdout
    apply(world)
    assert "deposed_job_id" not in world.state()["resources"]["job"]["alpha"]
    assert [j["displayName"] for j in world.live_jobs() if j["state"] == "JOB_STATE_RUNNING"] == ["alpha"]
    assert world.cli("plan", "--detailed-exitcode").exit_code == 0


def test_no_refresh_plan_sends_no_request(world):
    world.write_config(jobs_toml("alpha"))
    apply(world)
    world.server.stop()  # an unreachable control plane: any request would fail
    plan = world.cli("plan", "--no-refresh", "--detailed-exitcode")
    assert plan.exit_code == 0, plan.output
    assert "No changes." in plan.stdout
