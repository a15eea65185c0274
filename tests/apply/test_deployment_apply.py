"""Applying serving deployments: the deployment kind's steps and the scheduler's ordering.

With the fake control plane (fast, deterministic): a deployment is created only
after its trainer is ready, its record is on disk before the POST, a 409 adopts
only a matching deployment, updates PATCH with the right mask, a re-attach uses
the trainer's *new* job ID, a replace deletes and waits until the ID is free
before creating, destroy deletes deployments before their trainers, a failed
trainer skips its deployment, and one poll round covers every waiting
deployment. One test runs the real client against the in-process emulator.
"""

from __future__ import annotations

import sqlite3
import time

from rlorinfra.apply import SKIPPED, ApplyOptions, Executor, StateWriter
from rlorinfra.model.address import Address, Kind
from rlorinfra.model.deployments import DeploymentState, trainer_link
from rlorinfra.plan.model import Action, Change, Plan
from rlorinfra.state.model import PHASE_CREATING, PHASE_READY, DeploymentRecord, JobRecord, State
from tests.apply.fakes import DEPLOYMENT_SPEC, SPEC, FakePlane

TRAINER = Address.job("policy")


def run(plane, changes, state=None, **opts):
    writer = StateWriter(state or State(), lambda s: s)
    plane.writer = writer
    events = []
    list_pages = opts.pop("deployment_list_pages", 0)
    options = ApplyOptions(poll_min_s=0, poll_max_s=0, **opts)
    executor = Executor(
        plane, writer, options=options, on_event=events.append, sleep=lambda s: None, deployment_list_pages=list_pages
    )
    result = executor.run(Plan(changes=tuple(changes)))
    return result, writer.state, events


def link(job_id):
    return trainer_link("acct", job_id)


def after(**fields):
    return {**DEPLOYMENT_SPEC, "hot_load_trainer": "policy", **fields}


def deployment_change(action, name="rollout", **fields):
    return Change(name=name, job_id=name, action=action, kind=Kind.DEPLOYMENT, depends_on=(TRAINER,), **fields)


def job_record(job_id):
    return JobRecord(job_id=job_id, job_name=f"accounts/acct/rlorTrainerJobs/{job_id}", endpoint="e", spec=SPEC)


def deployment_record(job_id, name="rollout", phase=PHASE_READY, spec=None):
    return DeploymentRecord(
        deployment_id=name,
        deployment_name=f"accounts/acct/deployments/{name}",
        spec=spec or after(),
        phase=phase,
        observed_state="READY",
        hot_load_trainer_job=link(job_id),
        depends_on=(TRAINER,),
    )


def world(job_id="policy-000001", deployments=("rollout",), phase=PHASE_READY):
    """State with the trainer and its deployments; the fake holds them RUNNING and READY."""
    plane = FakePlane()
    plane.jobs[job_id], plane.names[job_id] = "JOB_STATE_RUNNING", "policy"
    resources = {
        Kind.JOB: {"policy": job_record(job_id)},
        Kind.DEPLOYMENT: {name: deployment_record(job_id, name, phase) for name in deployments},
    }
    for name in deployments:
        plane.add_deployment(name, {**DEPLOYMENT_SPEC, "hot_load_trainer_job": link(job_id)}, DeploymentState.READY)
    return plane, State(resources=resources)


def test_the_deployment_is_created_after_its_trainer_is_ready_and_points_at_it():
    plane = FakePlane()
    changes = [Change(name="policy", action=Action.CREATE, after=SPEC), deployment_change(Action.CREATE, after=after())]
    result, state, _ = run(plane, changes)
    assert [o.ok for o in result.outcomes] == [True, True], result.outcomes
    assert plane.timeline.index("running:policy") < plane.timeline.index("dcreate:rollout")
    job_id = state.jobs["policy"].job_id
    record = state.deployments["rollout"]
    assert record.phase == PHASE_READY and record.observed_state == "READY"
    assert record.hot_load_trainer_job == link(job_id) == plane.deployments["rollout"].hot_load_trainer_job
    assert record.hot_load_bucket_url == "gs://bucket/rollout"
    assert record.deployment_shape_version == DEPLOYMENT_SPEC["deployment_shape"]
    assert record.depends_on == (TRAINER,) and record.spec == after()


def test_the_record_is_written_before_the_post_and_survives_a_crash_in_it():
    plane, state = world(deployments=())
    plane.crash_deployment_create.add("rollout")
    result, state, _ = run(plane, [deployment_change(Action.CREATE, after=after())], state)
    assert not result.outcomes[0].ok and "killed during the POST" in result.outcomes[0].message
    assert plane.deployment_state_at_post[0].deployments["rollout"].phase == PHASE_CREATING
    assert state.deployments["rollout"].phase == PHASE_CREATING  # the next plan reconciles it by ID


def test_a_definite_refusal_leaves_no_record():
    plane, state = world(deployments=())
    plane.fail_deployment_create.add("rollout")
    result, state, _ = run(plane, [deployment_change(Action.CREATE, after=after())], state)
    assert not result.outcomes[0].ok and "rollout" not in state.deployments


def test_a_409_adopts_our_earlier_deployment_when_it_matches():
    plane, state = world(phase=PHASE_CREATING)
    result, state, _ = run(plane, [deployment_change(Action.CREATE, after=after())], state)
    assert result.outcomes[0].ok, result.outcomes
    assert state.deployments["rollout"].phase == PHASE_READY
    assert [c for c in plane.calls if c.startswith("d") and c != "dlist"] == ["dcreate:rollout", "dget"]


def test_a_409_for_a_deployment_that_is_not_ours_is_refused_and_left_alone():
    plane, state = world(phase=PHASE_CREATING)
    wanted = after(base_model="accounts/fireworks/models/other")
    result, state, _ = run(plane, [deployment_change(Action.CREATE, after=wanted)], state)
    outcome = result.outcomes[0]
    assert not outcome.ok and "already belongs to another deployment (base_model" in outcome.message
    assert "rollout" not in state.deployments
    assert plane.deployments["rollout"].base_model == DEPLOYMENT_SPEC["base_model"]  # untouched
    assert not any(c.startswith(("dpatch", "ddelete")) for c in plane.calls)


def test_update_patches_the_changed_fields_with_their_mask_and_waits():
    plane, state = world()
    wanted = after(min_replica_count=2, max_replica_count=3)
    change = deployment_change(
        Action.UPDATE, after=wanted, before=after(), changed_fields=("min_replica_count", "max_replica_count")
    )
    result, state, _ = run(plane, [change], state)
    assert result.outcomes[0].ok, result.outcomes
    assert "dpatch:rollout:min_replica_count,max_replica_count" in plane.calls
    assert plane.deployments["rollout"].max_replica_count == 3
    assert state.deployments["rollout"].spec == wanted and state.deployments["rollout"].phase == PHASE_READY


def test_reattach_after_the_trainer_is_replaced_in_the_same_run_uses_the_new_job_id():
    plane, state = world(job_id="policy-old001")
    plane.lose_patch_answer = 1  # the PATCH lands but its answer is lost: read back, never sent twice
    changes = [
        Change(name="policy", action=Action.REPLACE, job_id="policy-old001", before=SPEC, after=SPEC),
        deployment_change(Action.UPDATE, after=after(), before=after(), changed_fields=("hot_load_trainer",)),
    ]
    result, state, _ = run(plane, changes, state)
    assert all(o.ok for o in result.outcomes), result.outcomes
    new_id = state.jobs["policy"].job_id
    assert new_id != "policy-old001"
    assert plane.deployments["rollout"].hot_load_trainer_job == link(new_id)
    assert state.deployments["rollout"].hot_load_trainer_job == link(new_id)
    assert [c for c in plane.calls if c.startswith("dpatch")] == ["dpatch:rollout:hot_load_trainer_job"]
    assert not any(c.startswith(("ddelete", "dcreate")) for c in plane.calls)  # re-attached, never recreated


def test_replace_deletes_waits_until_gone_then_creates_the_same_id():
    plane, state = world()
    wanted = after(base_model="accounts/fireworks/models/qwen3-32b")
    change = deployment_change(Action.REPLACE, after=wanted, before=after(), changed_fields=("base_model",))
    result, state, _ = run(plane, [change], state)
    assert result.outcomes[0].ok, result.outcomes
    steps = [t for t in plane.timeline if t.endswith(":rollout")]
    assert steps == ["ddelete:rollout", "ddeleted:rollout", "dcreate:rollout"]
    assert plane.deployments["rollout"].base_model == wanted["base_model"]
    assert state.deployments["rollout"].spec == wanted and state.deployments["rollout"].phase == PHASE_READY


def test_destroy_deletes_the_deployment_before_its_trainer():
    plane, state = world()
    changes = [  # the trainer first in the plan: the scheduler still orders dependents first
        Change(name="policy", action=Action.DELETE, job_id="policy-000001", before=SPEC),
        Change(name="rollout", job_id="rollout", action=Action.DELETE, kind=Kind.DEPLOYMENT, depends_on=(TRAINER,)),
    ]
    result, state, _ = run(plane, changes, state)
    assert all(o.ok for o in result.outcomes), result.outcomes
    assert plane.timeline.index("ddeleted:rollout") < plane.timeline.index("delete:policy")
    assert state.resources == {}


def test_a_trainer_whose_dependent_delete_failed_is_not_deleted():
    plane, state = world()
    plane.deployment_polls = 10**6  # never gone
    changes = [
        Change(name="policy", action=Action.DELETE, job_id="policy-000001", before=SPEC),
        Change(name="rollout", job_id="rollout", action=Action.DELETE, kind=Kind.DEPLOYMENT, depends_on=(TRAINER,)),
    ]
    ticks = iter(range(0, 10**6, 100))
    writer = StateWriter(state, lambda s: s)
    options = ApplyOptions(poll_min_s=0, poll_max_s=0, timeout_s=500)
    executor = Executor(plane, writer, options=options, sleep=lambda s: None, clock=lambda: float(next(ticks)))
    result = executor.run(Plan(changes=tuple(changes)))
    by_name = {o.name: o for o in result.outcomes}
    assert "did not become gone" in by_name["rollout"].message
    assert by_name["policy"].message == SKIPPED and "delete:policy" not in plane.timeline


def test_a_failed_trainer_skips_its_deployment():
    plane = FakePlane()
    plane.fail_create.add("policy")
    changes = [Change(name="policy", action=Action.CREATE, after=SPEC), deployment_change(Action.CREATE, after=after())]
    result, state, _ = run(plane, changes)
    by_name = {o.name: o for o in result.outcomes}
    assert not by_name["policy"].ok
    assert not by_name["rollout"].ok and by_name["rollout"].message == SKIPPED
    assert not any(c.startswith("dcreate") for c in plane.calls) and "rollout" not in state.deployments


def test_a_deployment_that_fails_while_awaited_is_a_failure_not_a_recreate():
    plane, state = world(deployments=())
    plane.fail_deployment.add("rollout")
    result, state, _ = run(plane, [deployment_change(Action.CREATE, after=after())], state)
    outcome = result.outcomes[0]
    assert not outcome.ok and "entered bad state FAILED (OOM)" in outcome.message
    assert plane.calls.count("dcreate:rollout") == 1 and state.deployments["rollout"].phase == "failed"


def test_twenty_waiting_deployments_share_one_poll_round():
    plane, state = world(deployments=())
    writer = StateWriter(state, lambda s: s)
    options = ApplyOptions(parallelism=5, poll_min_s=0.02, poll_max_s=0.02)
    executor = Executor(plane, writer, options=options, sleep=time.sleep)
    changes = [deployment_change(Action.CREATE, name=f"rollout-{i}", after=after()) for i in range(20)]
    result = executor.run(Plan(changes=tuple(changes)))
    assert all(o.ok for o in result.outcomes), result.outcomes
    assert len(writer.state.deployments) == 20
    # Each round is one LIST page for all 20; settling takes 2 reads, so a handful of rounds.
    assert plane.calls.count("dlist") <= 5 and plane.calls.count("dget") == 0


def test_a_round_gets_each_deployment_when_that_is_fewer_requests():
    plane, state = world(deployments=())
    changes = [deployment_change(Action.CREATE, after=after())]
    result, state, _ = run(plane, changes, state, deployment_list_pages=3)
    assert result.outcomes[0].ok and "dlist" not in plane.calls and plane.calls.count("dget") >= 2


def test_against_the_emulator_the_deployment_is_created_after_its_trainer_runs(tmp_path):
    from rlorinfra.api.connect import for_wsgi_app
    from rlorinfra.controlplane import LOCAL_ACCOUNT_ID, embedded_app

    provision_s = 0.3
    client = for_wsgi_app(embedded_app(tmp_path / "cp.sqlite3", provision_seconds=provision_s))
    spec = {
        "base_model": "accounts/fireworks/models/qwen3-8b",
        "training_shape": "accounts/fireworks/trainingShapes/ts-qwen3-8b-policy",
    }
    dep = {
        "base_model": "accounts/fireworks/models/qwen3-8b",
        "deployment_shape": "accounts/fireworks/deploymentShapes/rft-qwen3-8b",
        "hot_load_trainer": "policy",
    }
    changes = [Change(name="policy", action=Action.CREATE, after=spec), deployment_change(Action.CREATE, after=dep)]
    writer = StateWriter(State(), lambda s: s)
    executor = Executor(client, writer, options=ApplyOptions(poll_min_s=0.05, poll_max_s=0.1, timeout_s=30))
    result = executor.run(Plan(changes=tuple(changes)))
    assert all(o.ok for o in result.outcomes), result.outcomes
    job_id = writer.state.jobs["policy"].job_id
    record = writer.state.deployments["rollout"]
    assert record.hot_load_trainer_job == trainer_link(LOCAL_ACCOUNT_ID, job_id)
    assert record.phase == PHASE_READY and record.hot_load_bucket_url
    with sqlite3.connect(tmp_path / "cp.sqlite3") as db:
        (job_created,) = db.execute("SELECT create_time FROM jobs WHERE job_id = ?", (job_id,)).fetchone()
        (dep_created,) = db.execute("SELECT create_time FROM deployments WHERE deployment_id = 'rollout'").fetchone()
    assert dep_created >= job_created + provision_s  # the trainer turned RUNNING at create + provision
    live = client.get_deployment("rollout")
    assert live is not None and live.is_ready and live.trainer_job_id == job_id


def test_the_apply_summary_counts_updates_only_when_there_are_some(capsys):
    from rlorinfra.apply import ApplyResult, Outcome
    from rlorinfra.cli.apply_cmds import _finish_line
    from rlorinfra.operations.ui import Operation

    created = Outcome("policy", "create", ok=True)
    _finish_line(Operation.APPLY, ApplyResult(outcomes=[created, Outcome("rollout", "update", ok=True)]), False)
    _finish_line(Operation.APPLY, ApplyResult(outcomes=[created]), False)
    lines = [line for line in capsys.readouterr().out.splitlines() if line]
    assert lines == [
        "Apply complete! Resources: 1 created, 1 updated, 0 resumed, 0 replaced, 0 stopped, 0 deleted.",
        "Apply complete! Resources: 1 created, 0 resumed, 0 replaced, 0 stopped, 0 deleted.",
    ]


def test_an_update_of_a_field_that_cannot_change_in_place_fails_without_a_request():
    plane, state = world()
    change = deployment_change(Action.UPDATE, after=after(region="US_OHIO_1"), changed_fields=("region",))
    result, state, _ = run(plane, [change], state)
    assert not result.outcomes[0].ok and "Cannot update deployment rollout in place" in result.outcomes[0].message
    assert not any(c.startswith("dpatch") for c in plane.calls)


def test_a_patch_lost_before_it_landed_is_sent_again_after_a_look():
    plane, state = world()
    plane.drop_patch = 1
    change = deployment_change(Action.UPDATE, after=after(max_replica_count=4), changed_fields=("max_replica_count",))
    result, state, _ = run(plane, [change], state)
    assert result.outcomes[0].ok, result.outcomes
    patches = [c for c in plane.calls if c.startswith("dpatch")]
    assert patches == ["dpatch:rollout:max_replica_count"] * 2  # a GET in between showed it had not landed
    assert plane.calls.index("dget") > plane.calls.index(patches[0])
    assert plane.deployments["rollout"].max_replica_count == 4
