"""Deployments planned beside their trainers through ``make_plan``: order, re-attach, destroy, rendering.

The trainer ``policy`` (job ID ``policy-1`` in state) is hot-loaded by the
deployment ``rollout``, whose shape comes from the trainer's training shape. The
kind's own decision table is ``tests/plan/kinds/test_deployment.py``.
"""

from __future__ import annotations

import dataclasses

import pytest

from rlorinfra.errors import PlanError
from rlorinfra.model.address import Address, Kind
from rlorinfra.model.deployments import DeploymentState
from rlorinfra.plan.document import plan_document, total_accelerators
from rlorinfra.plan.model import Action, Change, Plan
from rlorinfra.plan.planner import make_plan
from rlorinfra.render.text import render_plan_text
from tests.plan.planworld import (
    ACCOUNT,
    H100,
    declared,
    dep_record,
    deployment,
    deployments,
    desired,
    live_deployment,
    live_job,
    record,
    resolved,
    state,
    world,
)

POLICY = declared("policy")
REFERENCE = declared("reference", lora_rank=16)
ROLLOUT = deployment("rollout", hot_load_trainer="policy", min_replica_count=1, max_replica_count=2)
JOB = Address.job("policy")
DEP = Address(Kind.DEPLOYMENT, "rollout")
HEALTHY_POLICY = live_job("policy-1", "policy", spec=POLICY.spec(), healthy=True)
CONTROL_PLANE = {"url": "local", "account_id": ACCOUNT}


def managed(*, policy_spec=POLICY, trainer_job="policy-1", dep_spec=ROLLOUT):
    """State with the trainer (policy-1) and the deployment linked to ``trainer_job``."""
    return state(dep_record(dep_spec, trainer_job=trainer_job), policy=record(policy_spec, "policy-1"))


def live(*jobs, trainer_job="policy-1", dep_state=DeploymentState.READY, **fields):
    """Both resources live: the trainer(s) given and the deployment linked to ``trainer_job``."""
    spec = {**resolved(ROLLOUT), **fields}
    found = live_deployment("rollout", dep_state, spec=spec, trainer_job=trainer_job)
    return world(*(jobs or (HEALTHY_POLICY,)), deployments=(found,))


def plan_of(jobs=(POLICY,), deps=(ROLLOUT,), st=None, lw=None, **kwargs) -> Plan:
    """``make_plan`` of the declared ``jobs`` and ``deps`` over ``managed()`` and ``live()`` unless given."""
    return make_plan(
        desired(*jobs), st if st is not None else managed(), lw or live(), desired_by_kind=deployments(*deps), **kwargs
    )


def steps(plan: Plan) -> list[tuple[str, Action]]:
    """The plan's (address, action) pairs, in order."""
    return [(str(c.address), c.action) for c in plan.changes]


def change(plan: Plan, address: Address) -> Change:
    """The (first) change of ``address``."""
    return next(c for c in plan.changes if c.address == address)


def test_everything_matching_is_no_change():
    plan = plan_of()
    assert not plan.has_changes and plan.drift == ()
    assert steps(plan) == [("job.policy", Action.NOOP), ("deployment.rollout", Action.NOOP)]


def test_the_deployment_is_created_after_its_trainer():
    plan = plan_of(st=state(), lw=world())
    # Sorted by address, deployment.rollout would come first.
    assert steps(plan) == [("job.policy", Action.CREATE), ("deployment.rollout", Action.CREATE)]
    created = change(plan, DEP)
    assert (created.depends_on, created.job_id) == ((JOB,), None)
    assert created.after is not None and created.after["hot_load_trainer"] == "policy"
    # The summary's accelerators count both: the trainer's 8 and the deployment's floor of 1 × 8.
    assert total_accelerators(plan.changes) == {H100: 16}


def test_a_deployment_with_a_waiting_trainer_waits_after_it():
    plan = plan_of(lw=live(live_job("policy-1", "policy", "JOB_STATE_PENDING", spec=POLICY.spec())))
    assert steps(plan) == [("job.policy", Action.WAIT), ("deployment.rollout", Action.NOOP)]


@pytest.mark.parametrize("how", ["spec-changed", "requested"])
def test_replacing_the_trainer_reattaches_the_deployment_after_it(how):
    if how == "spec-changed":
        plan = plan_of(jobs=(dataclasses.replace(POLICY, lora_rank=8),))
    else:
        plan = plan_of(replace=["job.policy"])
    assert steps(plan) == [("job.policy", Action.REPLACE), ("deployment.rollout", Action.UPDATE)]
    update = change(plan, DEP)
    assert update.changed_fields == ("hot_load_trainer",)
    assert update.reason == "re-attach to the new job.policy"
    assert (update.job_id, update.depends_on, update.accelerators) == ("rollout", (JOB,), {})
    # The spec apply records once the PATCH landed, and the one it replaces.
    assert update.after == resolved(ROLLOUT) and update.before == resolved(ROLLOUT)


@pytest.mark.parametrize("gone", [None, "JOB_STATE_DELETED", "JOB_STATE_ARCHIVED", "JOB_STATE_DELETING"])
def test_a_trainer_recreated_after_out_of_band_deletion_reattaches(gone):
    if gone is None:  # 404
        lw = dataclasses.replace(live(), jobs={}, missing=frozenset({"policy-1"}))
    else:
        lw = live(live_job("policy-1", "policy", gone, spec=POLICY.spec()))
    plan = plan_of(lw=lw)
    assert steps(plan) == [("job.policy", Action.CREATE), ("deployment.rollout", Action.UPDATE)]
    assert change(plan, JOB).job_id is None  # a new job ID
    assert change(plan, DEP).changed_fields == ("hot_load_trainer",)


def test_a_trainer_whose_create_never_landed_keeps_its_id_and_the_link():
    st = state(dep_record(ROLLOUT, trainer_job="policy-1"), policy=record(POLICY, "policy-1", phase="creating"))
    lw = dataclasses.replace(live(), jobs={}, missing=frozenset({"policy-1"}))
    plan = plan_of(st=st, lw=lw)
    assert steps(plan) == [("job.policy", Action.CREATE), ("deployment.rollout", Action.NOOP)]
    assert change(plan, JOB).job_id == "policy-1"


def test_a_preempted_trainer_is_resumed_and_the_link_holds():
    preempted = live_job("policy-1", "policy", "JOB_STATE_FAILED", spec=POLICY.spec(), code="UNAVAILABLE",
                         message="pod preempted")  # fmt: skip
    plan = plan_of(lw=live(preempted))
    assert steps(plan) == [("job.policy", Action.RESUME), ("deployment.rollout", Action.NOOP)]
    assert [d.kind for d in plan.drift] == ["preempted"]


def test_a_trainer_replace_and_a_deployment_update_are_one_patch_after_it():
    plan = plan_of(
        jobs=(dataclasses.replace(POLICY, lora_rank=8),), deps=(dataclasses.replace(ROLLOUT, max_replica_count=4),)
    )
    assert steps(plan) == [("job.policy", Action.REPLACE), ("deployment.rollout", Action.UPDATE)]
    assert change(plan, DEP).changed_fields == ("hot_load_trainer", "max_replica_count")


def test_a_trainer_replace_and_a_deployment_replace_stay_a_replace_after_it():
    plan = plan_of(
        jobs=(dataclasses.replace(POLICY, lora_rank=8),), deps=(dataclasses.replace(ROLLOUT, region="US_IOWA_1"),)
    )
    assert steps(plan) == [("job.policy", Action.REPLACE), ("deployment.rollout", Action.REPLACE)]
    assert change(plan, DEP).changed_fields == ("region",)


def test_a_deployment_linked_elsewhere_is_reattached_with_drift():
    plan = plan_of(lw=live(trainer_job="someone-else-1"))
    assert steps(plan) == [("job.policy", Action.NOOP), ("deployment.rollout", Action.UPDATE)]
    assert change(plan, DEP).reason == "re-attach to job.policy"
    assert [(str(d.address), d.kind) for d in plan.drift] == [("deployment.rollout", "reattached")]


def test_a_deployment_scaled_outside_is_scaled_back_with_drift():
    plan = plan_of(lw=live(min_replica_count=3))
    assert change(plan, DEP).changed_fields == ("min_replica_count",)
    assert change(plan, DEP).accelerators == {H100: -16}
    assert [(str(d.address), d.kind) for d in plan.drift] == [("deployment.rollout", "scaled")]


# --- deletes and destroy -------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["destroy", "both-blocks-removed"])
def test_the_deployment_is_deleted_before_its_trainer(mode):
    # Both blocks removed: nothing declares the edge any more; state's depends_on does.
    plan = plan_of(destroy=True) if mode == "destroy" else plan_of(jobs=(), deps=())
    assert steps(plan) == [("deployment.rollout", Action.DELETE), ("job.policy", Action.DELETE)]
    delete = change(plan, DEP)
    assert (delete.depends_on, delete.accelerators) == ((JOB,), {H100: -8})


def test_removing_only_the_deployment_block_deletes_it_and_keeps_the_trainer():
    plan = plan_of(deps=())
    assert dict(steps(plan)) == {"deployment.rollout": Action.DELETE, "job.policy": Action.NOOP}
    assert change(plan, DEP).reason == "not in configuration"


def test_destroy_of_a_gone_deployment_forgets_it_before_the_trainer():
    plan = plan_of(
        destroy=True, lw=dataclasses.replace(live(), deployments={}, missing_deployments=frozenset({"rollout"}))
    )
    assert steps(plan) == [("deployment.rollout", Action.DELETE), ("job.policy", Action.DELETE)]
    assert change(plan, DEP).reason == "already deleted outside rlorinfra; forget it"


def test_destroy_targeting_only_the_trainer_names_the_deployment():
    with pytest.raises(PlanError) as err:
        plan_of(destroy=True, targets=["job.policy"])
    assert "Cannot delete job.policy: deployment.rollout depends on it" in str(err.value)


def test_removing_only_the_trainer_block_of_a_managed_deployment_is_refused():
    """The deployment is not declared (so not deleted) but out of the targets: it stays and needs the trainer."""
    with pytest.raises(PlanError) as err:
        plan_of(jobs=(), deps=(), targets=["job.policy"])
    assert "deployment.rollout depends on it" in str(err.value)


def test_destroy_targeting_both_is_fine():
    plan = plan_of(destroy=True, targets=["job.policy", "deployment.rollout"])
    assert steps(plan) == [("deployment.rollout", Action.DELETE), ("job.policy", Action.DELETE)]


def test_a_trainer_may_go_when_its_deployment_is_repointed_in_the_same_plan():
    plan = plan_of(
        jobs=(REFERENCE,),
        deps=(dataclasses.replace(ROLLOUT, hot_load_trainer="reference"),),
        st=state(
            dep_record(ROLLOUT, trainer_job="policy-1"),
            policy=record(POLICY, "policy-1"),
            reference=record(REFERENCE, "reference-1"),
        ),  # fmt: skip
        lw=live(HEALTHY_POLICY, live_job("reference-1", "reference", spec=REFERENCE.spec(), healthy=True)),
    )
    assert dict(steps(plan)) == {
        "job.policy": Action.DELETE,
        "job.reference": Action.NOOP,
        "deployment.rollout": Action.UPDATE,
    }
    assert change(plan, DEP).changed_fields == ("hot_load_trainer",)
    assert change(plan, DEP).depends_on == (Address.job("reference"),)


# --- problems, options --------------------------------------------------------------------------


def test_an_untracked_deployment_id_suggests_import():
    with pytest.raises(PlanError) as err:
        plan_of(st=state(policy=record(POLICY, "policy-1")))
    assert "rlorinfra import deployment.rollout rollout" in str(err.value)


def test_replace_and_target_take_deployment_addresses():
    plan = plan_of(replace=["deployment.rollout"], targets=["deployment.rollout"])
    assert steps(plan) == [("deployment.rollout", Action.REPLACE)]
    plan = plan_of(jobs=(dataclasses.replace(POLICY, lora_rank=8),), targets=["deployment.rollout"])
    assert steps(plan) == [("deployment.rollout", Action.NOOP)]  # the trainer's replace is out of scope


def test_an_unknown_trainer_shape_is_a_plan_error_naming_the_deployment():
    with pytest.raises(PlanError) as err:
        plan_of(st=state(), lw=world(shapes={}))
    assert 'deployment "rollout"' in str(err.value)


# --- rendering -----------------------------------------------------------------------------------


def test_the_plan_text_shows_the_edge_and_the_reattach():
    plan = plan_of(jobs=(dataclasses.replace(POLICY, lora_rank=8),))
    text = render_plan_text(plan_document(plan, control_plane=CONTROL_PLANE))
    assert "# deployment.rollout will be updated in-place (re-attach to the new job.policy)" in text
    assert "# depends on job.policy" in text
    assert '~ hot_load_trainer = "policy" (re-attach)' in text
    assert text.index("# job.policy") < text.index("# deployment.rollout")
    assert "1 to update" in text


def test_the_plan_text_of_a_create_shows_the_edge():
    text = render_plan_text(plan_document(plan_of(st=state(), lw=world()), control_plane=CONTROL_PLANE))
    block = text[text.index("# deployment.rollout will be created") :]
    assert block.splitlines()[1].strip() == "# depends on job.policy"
    assert "Accelerators: +16 × NVIDIA_H100_80GB" in text
