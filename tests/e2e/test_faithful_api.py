"""End to end against the strict (faithful) emulator: what the real API returns,
refuses and does, and the client and planner correct under it (issue: safe on
first contact with the real API).

Every test runs the CLI against an emulator served on a real loopback socket,
with a customer key; the fields the API does not declare are not echoed unless
a test serves with ``echo_create_fields`` to check the client behaves the same.
"""

from __future__ import annotations

import json
import textwrap
import time

import pytest

from tests.conftest import run_cli
from tests.e2e.conftest import API_KEY, KEY_ENV, jobs_toml, serve_world

AUTO_JOB = """
[jobs.auto-trainer]
base_model = "accounts/fireworks/models/qwen3-8b"
"""


def apply(world, *extra):
    result = world.cli("apply", "--auto-approve", *extra)
    assert result.exit_code == 0, result.output
    return result


def clean(world) -> None:
    plan = world.cli("plan", "--detailed-exitcode")
    assert plan.exit_code == 0, plan.output


@pytest.fixture(params=[False, True], ids=["returned-fields-only", "echo-create-fields"])
def any_world(request, tmp_path):
    """The served emulator in both modes: the client must not care which."""
    w = serve_world(tmp_path, echo_create_fields=request.param)
    yield w
    w.server.stop()


# --- create paths -------------------------------------------------------------------------


def test_a_job_with_no_shape_and_no_infra_fields_applies_with_a_customer_key(any_world):
    any_world.write_config(AUTO_JOB)
    apply(any_world)
    [job] = any_world.live_jobs()
    assert job["state"] == "JOB_STATE_RUNNING" and job["displayName"] == "auto-trainer"
    clean(any_world)


def test_node_count_alone_fails_validation_with_the_way_out(world):
    world.write_config(AUTO_JOB + "node_count = 2\n")
    result = world.cli("validate")
    assert result.exit_code == 1
    assert "node_count" in result.stderr and "auto-shape path" in result.stderr
    assert "training_shape" in result.stderr and "accelerator_type" in result.stderr
    assert not world.state_path.exists()


def test_the_manual_path_needs_skip_validations_and_is_refused_for_a_customer_key(world):
    manual = AUTO_JOB + 'accelerator_type = "NVIDIA_H100_80GB"\naccelerator_count = 8\n'
    world.write_config(manual)
    undeclared = world.cli("plan")
    assert undeclared.exit_code == 1 and "skip_validations = true" in undeclared.stderr
    world.write_config(manual + "skip_validations = true\n")
    refused = world.cli("apply", "--auto-approve")  # the served key is a customer key
    assert refused.exit_code == 1 and "superuser" in refused.stderr, refused.output
    assert world.live_jobs() == [] and world.state()["resources"]["job"] == {}


# --- drift and import use only what the API returns ---------------------------------------


def test_apply_then_plan_is_clean_in_both_emulator_modes(any_world):
    any_world.write_config(jobs_toml("alpha", extra={"alpha": 'inactivity_timeout = "1h"\ntrainer_replica_count = 2'}))
    apply(any_world)
    clean(any_world)


@pytest.mark.parametrize(
    "defaults",
    ["", '[defaults]\nlearning_rate = 3e-5\nregion = "US_IOWA_1"\ntraining_shape = "ts-qwen3-8b-policy"\n'],
    ids=["no-defaults", "defaults"],
)
def test_import_then_generate_config_plans_no_changes(any_world, defaults):
    job_id = _job_made_by_a_script(any_world)
    any_world.write_config(defaults)
    imported = any_world.cli("import", "scripted", job_id, "--generate-config")
    assert imported.exit_code == 0, imported.output
    assert "could not read" in imported.stdout  # the fields the API does not return, named
    assert "training_shape" in imported.stderr
    any_world.config.write_text(any_world.config.read_text() + "\n" + imported.stdout)
    plan = any_world.cli("plan", "--detailed-exitcode")
    assert plan.exit_code == 0, plan.output
    assert "No changes" in plan.stdout
    apply(any_world)  # records the declared values of the unread fields, replaces nothing
    assert [j["name"].rsplit("/", 1)[-1] for j in any_world.live_jobs()] == [job_id]
    assert "unread_fields" not in any_world.state()["resources"]["job"]["scripted"]
    clean(any_world)


def _job_made_by_a_script(world) -> str:
    """A job created outside rlorinfra on the shape path, as TrainerJobManager would."""
    import httpx

    body = {
        "serviceMode": True,
        "keepAlive": False,
        "dataset": "",
        "displayName": "scripted",
        "trainingConfig": {"baseModel": "accounts/fireworks/models/qwen3-8b", "loraRank": 0, "learningRate": 1e-5},
        "useReservation": True,
    }
    params = {
        "trainingShape": "accounts/fireworks/trainingShapes/ts-qwen3-8b-policy",
        "rlorTrainerJobId": "scripted-1234",
    }
    with httpx.Client(base_url=world.url, headers={"X-Api-Key": API_KEY}) as http:
        response = http.post("/v1/accounts/local/rlorTrainerJobs", params=params, json=body)
        assert response.status_code == 200, response.text
        for _ in range(100):  # as the script's create_and_wait would: until RUNNING
            if http.get("/v1/accounts/local/rlorTrainerJobs/scripted-1234").json()["state"] == "JOB_STATE_RUNNING":
                break
            time.sleep(0.05)
    return "scripted-1234"


def test_reimporting_an_already_managed_pair_says_so(world):
    job_id = _job_made_by_a_script(world)
    world.write_config("")
    assert world.cli("import", "scripted", job_id).exit_code == 0
    again = world.cli("import", "scripted", job_id)
    assert again.exit_code == 0 and "already managed" in again.stdout
    assert "Import successful" not in again.stdout


# --- every fault leads to the planned action (DESIGN.md §5) ---------------------------------


@pytest.mark.parametrize(
    "fault,action",
    [
        ("complete", "resume"),
        ("pause", "resume"),
        ("preempt", "resume"),
        ("fail", "resume"),
        ("early_stop", "replace"),
        ("expire", "replace"),
    ],
)
def test_each_fault_is_planned_as_designed_and_one_apply_heals_it(world, fault, action):
    world.write_config(jobs_toml("alpha"))
    apply(world)
    job_id = world.state()["resources"]["job"]["alpha"]["job_id"]
    getattr(world.store, fault)(job_id)
    plan = world.cli("plan", "--detailed-exitcode", "--json")
    assert plan.exit_code == 2, plan.output
    [change] = [c for c in json.loads(plan.stdout)["changes"] if c["name"] == "alpha"]
    assert change["action"] == action
    apply(world)
    clean(world)


def test_a_flapping_trainer_is_resumed_each_time_it_fails(world):
    world.write_config(jobs_toml("alpha"))
    apply(world)
    job_id = world.state()["resources"]["job"]["alpha"]["job_id"]
    world.store.flap(job_id, 0.3)
    time.sleep(0.5)  # RUNNING for longer than the period: it has crashed
    plan = world.cli("plan", "--json")
    [change] = json.loads(plan.stdout)["changes"]
    assert change["action"] == "resume"
    world.store.flap(job_id, off=True)
    apply(world)
    clean(world)
    assert world.state()["resources"]["job"]["alpha"]["job_id"] == job_id


@pytest.mark.parametrize("operation", ["resume", "cancel", "create", "delete"])
def test_a_lost_response_still_converges_in_one_apply(world, operation):
    world.write_config(jobs_toml("alpha"))
    if operation != "create":
        apply(world)
    job_id = world.state()["resources"]["job"]["alpha"]["job_id"] if operation != "create" else None
    if operation == "resume":
        world.store.preempt(job_id)
    elif operation == "cancel":
        world.write_config(jobs_toml("alpha", extra={"alpha": 'desired_state = "stopped"'}))
    elif operation == "delete":
        world.write_config("")
    world.store.arm_drop(operation)
    apply(world)
    assert world.store.armed_drops().get(operation, 0) == 0  # the server did act and drop its answer
    clean(world)
    live = [j for j in world.live_jobs() if j["state"] not in ("JOB_STATE_DELETING",)]
    assert len(live) == (0 if operation == "delete" else 1)


# --- one control plane, one state -----------------------------------------------------------


def test_a_state_made_on_the_embedded_emulator_is_refused_by_a_served_one_and_back(world, tmp_path):
    folder = world.folder
    (folder / "rlorinfra.toml").write_text(jobs_toml("alpha"))  # url = local (embedded)
    env = {"NO_COLOR": "1"}
    made = run_cli(["apply", "-f", str(folder / "rlorinfra.toml"), "--auto-approve"], env=env)
    assert made.exit_code == 0, made.output
    world.write_config(jobs_toml("alpha"))  # same folder and state file, now the served emulator
    served = world.cli("plan")
    assert served.exit_code == 1 and "another control plane" in served.stderr, served.output

    other = tmp_path / "other"
    other.mkdir()
    world.folder = other
    world.write_config(jobs_toml("alpha"))
    apply(world)
    (other / "rlorinfra.toml").write_text(jobs_toml("alpha"))  # back to the embedded emulator
    embedded = run_cli(["plan", "-f", str(other / "rlorinfra.toml")], env=env)
    assert embedded.exit_code == 1 and "another control plane" in embedded.stderr, embedded.output


def _another_world(folder):
    """A second served emulator with its own database (another world)."""
    folder.mkdir()
    return serve_world(folder)


def test_two_served_emulator_databases_are_two_worlds(world, tmp_path):
    world.write_config(jobs_toml("alpha"))
    apply(world)
    second = _another_world(tmp_path / "second")
    try:
        config = world.config.read_text().replace(world.url, second.url)
        world.config.write_text(config)
        refused = world.cli("plan")
        assert refused.exit_code == 1 and "another control plane" in refused.stderr, refused.output
    finally:
        second.server.stop()


def test_url_local_works_whatever_the_api_key_variable_holds(tmp_path):
    config = tmp_path / "rlorinfra.toml"
    config.write_text(textwrap.dedent(AUTO_JOB))
    result = run_cli(["plan", "-f", str(config)], env={"FIREWORKS_API_KEY": "fw_not_the_emulators_key"})
    assert result.exit_code == 0, result.output
    assert KEY_ENV  # the served worlds use their own variable


# --- saved plans are checked against the world before they run (issue 12.3) -----------------


def _saved(world, *args):
    plan_file = world.folder / "release.plan"
    made = world.cli("plan", "--out", str(plan_file), *args)
    assert made.exit_code == 0, made.output
    return plan_file, json.loads(plan_file.read_text())


def _write(plan_file, payload):
    plan_file.write_text(json.dumps(payload))


def test_an_edited_plan_that_deletes_an_unmanaged_job_is_refused(world):
    world.write_config(jobs_toml("alpha"))
    apply(world)
    stranger = _job_made_by_a_script(world)
    plan_file, payload = _saved(world)
    change = dict(payload["plan"]["changes"][0], action="delete", job_id=stranger, reason="")
    payload["plan"]["changes"].append(change)
    _write(plan_file, payload)
    refused = world.cli("apply", str(plan_file))
    assert refused.exit_code == 1 and "does not match the world" in refused.stderr, refused.output
    assert stranger in [j["name"].rsplit("/", 1)[-1] for j in world.live_jobs()]  # nothing was deleted


def test_an_edited_plan_that_points_a_create_at_another_jobs_id_is_refused(world):
    stranger = _job_made_by_a_script(world)
    world.write_config(jobs_toml("alpha"))
    plan_file, payload = _saved(world)
    payload["plan"]["changes"][0]["job_id"] = stranger
    _write(plan_file, payload)
    refused = world.cli("apply", str(plan_file))
    assert refused.exit_code == 1 and "does not match the world" in refused.stderr, refused.output
    assert "alpha" not in world.state()["resources"]["job"] if world.state_path.exists() else True


def test_a_plan_saved_against_an_empty_state_in_another_checkout_is_refused(world, tmp_path):
    world.write_config(jobs_toml("alpha"))
    plan_file, _ = _saved(world)  # made while this checkout's state was empty
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    import shutil

    shutil.copy(world.config, elsewhere / "rlorinfra.toml")
    mine = world.folder
    world.folder = elsewhere
    apply(world)  # the other checkout created alpha
    world.folder = mine
    refused = world.cli("apply", str(plan_file))  # this checkout: empty state, but alpha is live now
    assert refused.exit_code == 1, refused.output
    assert len([j for j in world.live_jobs() if j["displayName"] == "alpha"]) == 1  # never a duplicate


def test_an_untouched_saved_plan_applies(world):
    world.write_config(jobs_toml("alpha", "beta"))
    plan_file, _ = _saved(world, "--target", "alpha")
    applied = world.cli("apply", str(plan_file))
    assert applied.exit_code == 0, applied.output
    assert set(world.state()["resources"]["job"]) == {"alpha"}


def test_a_state_emptied_by_destroy_moves_to_the_next_control_plane_it_is_used_with(world, tmp_path):
    (world.folder / "rlorinfra.toml").write_text(jobs_toml("alpha"))  # embedded emulator
    env = {"NO_COLOR": "1"}
    config = str(world.folder / "rlorinfra.toml")
    assert run_cli(["apply", "-f", config, "--auto-approve"], env=env).exit_code == 0
    assert run_cli(["destroy", "-f", config, "--auto-approve"], env=env).exit_code == 0
    world.write_config(jobs_toml("alpha"))  # now the served emulator, same (empty) state
    apply(world)
    clean(world)
    assert world.state()["control_plane"]["url"] == world.url


def test_a_saved_plan_whose_waits_finished_meanwhile_still_applies(tmp_path):
    slow = serve_world(tmp_path, provision_seconds=1.5)
    try:
        slow.write_config(jobs_toml("alpha", "beta"))
        assert slow.cli("apply", "--auto-approve", "--target", "alpha", "--no-wait").exit_code == 0
        plan_file, payload = _saved(slow)  # alpha: still provisioning, a wait; beta: a create
        assert {c["action"] for c in payload["plan"]["changes"]} == {"wait", "create"}
        time.sleep(2)  # alpha is RUNNING now: planning again gives a no-op for it
        applied = slow.cli("apply", str(plan_file))
        assert applied.exit_code == 0, applied.output
        assert set(slow.state()["resources"]["job"]) == {"alpha", "beta"}
    finally:
        slow.server.stop()


# --- review findings: no-refresh paths, older-spec adoption -------------------------------------


def _creating_record_for(world, name: str, job_id: str) -> None:
    """State as a run killed right after choosing ``job_id`` for ``name`` leaves it."""
    doc = world.state()
    other = next(iter(doc["resources"]["job"].values()))
    doc["resources"]["job"][name] = {
        **other,
        "job_id": job_id,
        "phase": "creating",
        "observed_state": None,
        "job_name": other["job_name"].replace(other["job_id"], job_id),
        "endpoint": other["endpoint"].replace(other["job_id"], job_id),
    }
    world.state_path.write_text(json.dumps(doc))


def _post_job(world, job_id: str, display_name: str, lora_rank: int = 0) -> None:
    import httpx

    body = {
        "serviceMode": True,
        "keepAlive": False,
        "dataset": "",
        "displayName": display_name,
        "trainingConfig": {
            "baseModel": "accounts/fireworks/models/qwen3-8b",
            "loraRank": lora_rank,
            "learningRate": 1e-5,
        },
        "useReservation": True,
    }
    params = {"trainingShape": "accounts/fireworks/trainingShapes/ts-qwen3-8b-policy", "rlorTrainerJobId": job_id}
    with httpx.Client(base_url=world.url, headers={"X-Api-Key": API_KEY}) as http:
        assert http.post("/v1/accounts/local/rlorTrainerJobs", params=params, json=body).status_code == 200


def test_our_job_made_from_an_older_spec_is_adopted_on_409_and_then_replaced_never_orphaned(world):
    world.write_config(jobs_toml("beta"))
    apply(world)
    _creating_record_for(world, "alpha", "alpha-0a1b2c")
    _post_job(world, "alpha-0a1b2c", "alpha", lora_rank=0)  # the killed run's POST landed
    world.write_config(jobs_toml("alpha", "beta", extra={"alpha": "lora_rank = 8"}))  # config changed since
    apply(world, "--no-refresh")  # the 409 adopts our own job (same name) with what it reports
    assert world.state()["resources"]["job"]["alpha"]["job_id"] == "alpha-0a1b2c"
    apply(world)  # the next plan sees lora_rank 0 -> 8 and replaces it
    assert world.state()["resources"]["job"]["alpha"]["job_id"] != "alpha-0a1b2c"
    clean(world)
    assert [j["displayName"] for j in world.live_jobs() if j["state"] == "JOB_STATE_RUNNING"].count("alpha") == 1


def test_no_refresh_never_deletes_a_job_that_holds_a_creating_records_id_under_another_name(world):
    world.write_config(jobs_toml("beta"))
    apply(world)
    _creating_record_for(world, "alpha", "alpha-0a1b2c")
    _post_job(world, "alpha-0a1b2c", "intruder")
    world.write_config(jobs_toml("beta"))  # alpha's block removed: the plan deletes/forgets it
    apply(world, "--no-refresh")
    assert "alpha" not in world.state()["resources"]["job"]
    assert world.store.get_job("alpha-0a1b2c")["state"] not in ("JOB_STATE_DELETING", "JOB_STATE_ARCHIVED")


def test_a_plan_saved_without_refresh_applies(world):
    world.write_config(jobs_toml("alpha"))
    apply(world)
    world.write_config(jobs_toml("alpha", "beta"))
    plan_file, _ = _saved(world, "--no-refresh")
    applied = world.cli("apply", str(plan_file))
    assert applied.exit_code == 0, applied.output
    assert set(world.state()["resources"]["job"]) == {"alpha", "beta"}


def test_apply_without_refresh_checks_the_emulator_instance_before_changing_anything(world, tmp_path):
    world.write_config(jobs_toml("alpha"))
    apply(world)
    other = _another_world(tmp_path / "b")
    try:
        world.config.write_text(world.config.read_text().replace(world.url, other.url) + jobs_toml("beta"))
        refused = world.cli("apply", "--auto-approve", "--no-refresh")
        assert refused.exit_code == 1 and "another control plane" in refused.stderr, refused.output
        assert other.live_jobs() == []
    finally:
        other.server.stop()


def test_terraforms_refresh_false_spelling_is_accepted(world):
    world.write_config(jobs_toml("alpha"))
    apply(world)
    assert world.cli("plan", "-refresh=false", "-detailed-exitcode").exit_code == 0
