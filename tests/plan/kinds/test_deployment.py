"""The deployment's ResourceKind, called directly: its decision table one row per case and per state.

The deployment ``rollout`` hot-loads the trainer ``policy`` (job ID ``policy-1`` in
state). ``MANUAL`` is on the manual path (2 min replicas × 1 H100), ``SHAPED`` takes
its shape from the trainer's training shape (1 min replica × the shape's 8 H100).
Ordering against the trainer and re-attach through the planner core are in
``tests/plan/test_deployment_planning.py``.
"""

from __future__ import annotations

import dataclasses

import pytest

from rlorinfra.config.model import DeploymentSpec
from rlorinfra.model.address import Address, Kind
from rlorinfra.model.deployments import DeploymentState, HotLoadTransition
from rlorinfra.model.jobs import ShapeVersion
from rlorinfra.plan.kinds.deployment import (
    DEPLOYMENT_KIND,
    REASON_NOT_DECLARED,
    REASON_RECREATE_SAME_ID,
    REASON_REPLACE_REQUESTED,
    per_replica,
)
from rlorinfra.plan.model import Action, Change, LiveWorld, PlanContext
from rlorinfra.plan.problems import PlanProblem
from rlorinfra.state.model import DeploymentRecord
from tests.plan.planworld import (
    A100,
    DSHAPE,
    DSHAPE_OTHER,
    H100,
    SHAPE,
    SHAPES,
    declared,
    dep_record,
    deployment,
    live_deployment,
    record,
    resolved,
    state,
    world,
)

ID = "rollout"
ADDRESS = Address(Kind.DEPLOYMENT, ID)
TRAINER_ADDRESS = Address.job("policy")
TRAINER = declared("policy")  # training shape SHAPE, whose deployment shape is DSHAPE/versions/5
MANUAL = deployment(ID, hot_load_trainer="policy", accelerator_type=H100, accept_shapeless_risk=True,
                    min_replica_count=2, max_replica_count=4)  # fmt: skip
SHAPED = deployment(ID, hot_load_trainer="policy", min_replica_count=1, max_replica_count=2)
MANUAL_FLOOR = {H100: 2}
SHAPED_FLOOR = {H100: 8}
STATES = list(DeploymentState)
GONE = (DeploymentState.DELETING, DeploymentState.DELETED, None)  # None: 404


def context(spec: DeploymentSpec | None = MANUAL, *, trainer_job: str = "policy-1") -> PlanContext:
    """The trainer declared and in state under ``trainer_job``; the deployment declared when ``spec``."""
    declared_ = {TRAINER_ADDRESS: TRAINER}
    if spec is not None:
        declared_[ADDRESS] = spec
    return PlanContext(state=state(policy=record(TRAINER, trainer_job)), declared=declared_)


def rec(spec: DeploymentSpec = MANUAL, **kwargs) -> DeploymentRecord:
    """The deployment's record, linked to policy-1 unless told otherwise."""
    kwargs.setdefault("trainer_job", "policy-1")
    return dep_record(spec, **kwargs)


def live_of(
    spec: DeploymentSpec = MANUAL, dep_state: DeploymentState | None = DeploymentState.READY, **overrides
) -> LiveWorld:
    """A refreshed world where the deployment is ``dep_state`` (None: 404) with ``spec``'s fields."""
    if dep_state is None:
        return world(missing_deployments=(ID,))
    trainer_job = overrides.pop("trainer_job", "policy-1")
    message = overrides.pop("message", "")
    fields = {**resolved(spec), **overrides}
    return world(deployments=(live_deployment(ID, dep_state, spec=fields, trainer_job=trainer_job, message=message),))


def plan(
    spec: DeploymentSpec | None,
    record_: DeploymentRecord | None,
    live: LiveWorld,
    *,
    force_replace: bool = False,
    ctx: PlanContext | None = None,
) -> Change | None:
    """The kind's decision for ``rollout`` (context: the trainer in state, ``spec`` declared)."""
    return DEPLOYMENT_KIND.plan(ID, spec, record_, live, force_replace=force_replace, context=ctx or context(spec))


def the(change: Change | None) -> Change:
    """``change``, which must exist."""
    assert change is not None
    return change


# --- every live state × declared / not declared / destroy × record phase -------------------------

# (action, reason, accelerators) for a declared deployment whose spec and link match state.
DECLARED = {
    DeploymentState.UNSPECIFIED: (Action.WAIT, "deployment is STATE_UNSPECIFIED", {}),
    DeploymentState.CREATING: (Action.WAIT, "deployment is CREATING", {}),
    DeploymentState.READY: (Action.NOOP, "deployment is READY", {}),
    DeploymentState.UPDATING: (Action.WAIT, "deployment is UPDATING", {}),
    DeploymentState.FAILED: (Action.REPLACE, "FAILED: out of capacity", MANUAL_FLOOR),  # a FAILED one holds nothing
    DeploymentState.DELETING: (Action.CREATE, "being deleted outside rlorinfra", MANUAL_FLOOR),
    DeploymentState.DELETED: (Action.CREATE, "deleted outside rlorinfra", MANUAL_FLOOR),
    None: (Action.CREATE, "deleted outside rlorinfra", MANUAL_FLOOR),
}


@pytest.mark.parametrize("phase", ["creating", "ready"])
@pytest.mark.parametrize("dep_state", [*STATES, None], ids=[*(s.name for s in STATES), "404"])
def test_declared_in_every_state(dep_state, phase):
    action, reason, accelerators = DECLARED[dep_state]
    if dep_state is None and phase == "creating":  # our own create never landed: the same ID again
        reason = REASON_RECREATE_SAME_ID
    change = the(plan(MANUAL, rec(phase=phase), live_of(MANUAL, dep_state, message="out of capacity")))
    assert (change.action, change.reason, change.accelerators) == (action, reason, accelerators)
    assert (change.job_id, change.address, change.changed_fields) == (ID, ADDRESS, ())
    assert change.depends_on == (TRAINER_ADDRESS,)
    assert change.live_state == (dep_state.value if dep_state is not None else None)
    if action in (Action.CREATE, Action.REPLACE):
        assert change.after == resolved(MANUAL)
        assert "hot_load_trainer_job" not in change.after  # apply links the trainer's job ID at step time


@pytest.mark.parametrize("destroy", [False, True], ids=["not-declared", "destroy"])
@pytest.mark.parametrize("phase", ["creating", "ready"])
@pytest.mark.parametrize("dep_state", [*STATES, None], ids=[*(s.name for s in STATES), "404"])
def test_undeclared_or_destroyed_in_every_state(dep_state, phase, destroy):
    record_ = rec(phase=phase)
    live = live_of(MANUAL, dep_state)
    if destroy:
        change = DEPLOYMENT_KIND.plan_destroy(ID, MANUAL, record_, live)
    else:
        change = the(plan(None, record_, live, ctx=context(None)))
    gone = dep_state in GONE
    reason = "" if destroy else REASON_NOT_DECLARED
    if gone:
        reason = "already deleted outside rlorinfra; forget it"
        if dep_state is None and phase == "creating":
            reason = "its create never reached the control plane; forget it"
    held = {} if gone or dep_state == DeploymentState.FAILED else {H100: -2}
    assert (change.action, change.reason, change.accelerators) == (Action.DELETE, reason, held)
    assert (change.job_id, change.before, change.after) == (ID, record_.spec, None)
    assert change.depends_on == (TRAINER_ADDRESS,)  # from the record: the file may no longer say it


def test_undeclared_delete_takes_its_edges_from_the_record():
    record_ = rec(depends_on=(Address.job("old-policy"),))
    change = the(plan(None, record_, live_of(), ctx=context(None)))
    assert change.depends_on == (Address.job("old-policy"),)


def test_nothing_declared_nothing_recorded_is_no_change():
    assert plan(None, None, world(), ctx=context(None)) is None


# --- create ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "floor", "shape"),
    [(MANUAL, MANUAL_FLOOR, None), (SHAPED, SHAPED_FLOOR, f"{DSHAPE}/versions/5")],
    ids=["manual-path", "trainer-shape"],
)
def test_declared_not_in_state_is_created_after_its_trainer(spec, floor, shape):
    change = the(plan(spec, None, world()))
    assert (change.action, change.reason, change.job_id) == (Action.CREATE, "", None)
    assert change.depends_on == (TRAINER_ADDRESS,)
    assert change.accelerators == floor
    assert change.after is not None and change.after.get("deployment_shape") == shape
    assert change.after["hot_load_trainer"] == "policy"
    assert "deployment_shape_from" not in change.after


def test_a_deployment_without_a_trainer_depends_on_nothing():
    spec = deployment(ID, deployment_shape=f"{DSHAPE}/versions/5")
    change = the(plan(spec, None, world()))
    assert (change.action, change.depends_on) == (Action.CREATE, ())
    assert change.accelerators == {}  # min replicas 0: no floor


def test_min_replicas_zero_holds_no_floor():
    assert the(plan(deployment(ID, hot_load_trainer="policy"), None, world())).accelerators == {}


# --- replace -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "field", "accelerators"),
    [
        ({"base_model": "accounts/fireworks/models/llama-70b"}, "base_model", {}),
        ({"accelerator_type": A100}, "accelerator_type", {A100: 2, H100: -2}),
        ({"region": "US_IOWA_1"}, "region", {}),
        ({"enable_hot_load": False}, "enable_hot_load", {}),
        ({"disable_speculative_decoding": True}, "disable_speculative_decoding", {}),
        ({"annotations": (("team", "rl"),)}, "annotations", {}),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_an_immutable_field_changed_replaces_under_the_same_id(changes, field, accelerators):
    spec = dataclasses.replace(MANUAL, **changes)
    change = the(plan(spec, rec(), live_of()))
    assert (change.action, change.job_id, change.changed_fields) == (Action.REPLACE, ID, (field,))
    assert (change.reason, change.accelerators) == ("", accelerators)
    assert change.before == resolved(MANUAL) and change.after == resolved(spec)
    assert change.depends_on == (TRAINER_ADDRESS,)


def test_a_declared_shape_replacing_the_trainer_shape_replaces():
    spec = dataclasses.replace(SHAPED, deployment_shape=DSHAPE_OTHER)
    change = the(plan(spec, rec(SHAPED), live_of(SHAPED)))
    assert (change.action, change.changed_fields) == (Action.REPLACE, ("deployment_shape",))
    assert change.accelerators == {H100: -8}  # the other shape's accelerators are unknown


def test_replace_requested():
    change = the(plan(MANUAL, rec(), live_of(), force_replace=True))
    assert (change.action, change.reason, change.job_id) == (Action.REPLACE, REASON_REPLACE_REQUESTED, ID)
    assert change.accelerators == {}  # the same floor deleted, then created


def test_failed_without_a_status_message_names_the_state():
    change = the(plan(MANUAL, rec(), live_of(dep_state=DeploymentState.FAILED)))
    assert (change.action, change.reason) == (Action.REPLACE, "deployment is FAILED")


GUARDED = dataclasses.replace(MANUAL, prevent_destroy=True)


@pytest.mark.parametrize(
    ("spec", "live", "force_replace", "verb"),
    [
        (GUARDED, live_of(dep_state=DeploymentState.FAILED), False, "replace"),
        (dataclasses.replace(GUARDED, region="US_IOWA_1"), live_of(), False, "replace"),
        (GUARDED, live_of(), True, "replace"),
    ],
    ids=["failed", "immutable-field", "replace-requested"],
)
def test_prevent_destroy_refuses_a_replace(spec, live, force_replace, verb):
    with pytest.raises(PlanProblem) as err:
        plan(spec, rec(), live, force_replace=force_replace)
    assert "prevent_destroy" in err.value.summary and f"would {verb}" in err.value.summary
    assert f"[deployments.{ID}]" in err.value.detail


def test_prevent_destroy_refuses_destroy_but_not_forgetting_a_gone_one():
    with pytest.raises(PlanProblem) as err:
        DEPLOYMENT_KIND.plan_destroy(ID, GUARDED, rec(), live_of())
    assert "would delete" in err.value.summary
    gone = DEPLOYMENT_KIND.plan_destroy(ID, GUARDED, rec(), live_of(dep_state=None))
    assert (gone.action, gone.reason) == (Action.DELETE, "already deleted outside rlorinfra; forget it")


def test_prevent_destroy_does_not_stop_in_place_updates():
    spec = dataclasses.replace(GUARDED, max_replica_count=8)
    assert the(plan(spec, rec(GUARDED), live_of(GUARDED))).action is Action.UPDATE


# --- update in place ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "fields", "accelerators"),
    [
        ({"min_replica_count": 3}, ("min_replica_count",), {H100: 1}),
        ({"max_replica_count": 8}, ("max_replica_count",), {}),
        ({"min_replica_count": 0, "max_replica_count": 1}, ("max_replica_count", "min_replica_count"), {H100: -2}),
        ({"hot_load_transition": HotLoadTransition.SYNC}, ("hot_load_transition_type",), {}),
        ({"description": "rollouts for grpo"}, ("description",), {}),
    ],
    ids=["min", "max", "both", "transition", "description"],
)
def test_an_in_place_field_changed_in_the_file_is_updated(changes, fields, accelerators):
    spec = dataclasses.replace(MANUAL, **changes)
    change = the(plan(spec, rec(), live_of()))
    assert (change.action, change.changed_fields, change.job_id) == (Action.UPDATE, fields, ID)
    assert (change.reason, change.accelerators) == ("", accelerators)
    assert change.before == resolved(MANUAL) and change.after == resolved(spec)
    assert change.depends_on == (TRAINER_ADDRESS,)


def test_scaled_outside_is_scaled_back():
    live = live_of(min_replica_count=5)
    change = the(plan(MANUAL, rec(), live))
    assert (change.action, change.changed_fields) == (Action.UPDATE, ("min_replica_count",))
    assert change.before is not None and change.before["min_replica_count"] == 5  # what is live now
    assert change.accelerators == {H100: -3}
    drift = DEPLOYMENT_KIND.drift(ID, rec(), live)
    assert [(d.kind, d.changed_fields, d.address) for d in drift] == [("scaled", ("min_replica_count",), ADDRESS)]
    assert "min_replica_count (2 -> 5)" in drift[0].detail


@pytest.mark.parametrize("min_live", [0, 5])
def test_a_scaled_deployment_replaced_or_deleted_releases_what_it_holds_live(min_live):
    live = live_of(min_replica_count=min_live)
    replaced = the(plan(MANUAL, rec(), live, force_replace=True))
    assert replaced.accelerators == {H100: 2 - min_live}  # created at 2, held min_live
    deleted = the(plan(None, rec(), live, ctx=context(None)))
    assert deleted.accelerators == ({H100: -min_live} if min_live else {})
    unrefreshed = the(plan(None, rec(), world(refreshed=False), ctx=context(None)))
    assert unrefreshed.accelerators == {H100: -2}  # state's memory


def test_an_update_counts_what_is_held_live_even_for_a_field_it_leaves_alone():
    """Scaled to 0 outside, and the file now says 0 too: only max is PATCHed, and nothing is released."""
    spec = dataclasses.replace(MANUAL, min_replica_count=0, max_replica_count=1)
    change = the(plan(spec, rec(), live_of(min_replica_count=0)))
    assert (change.action, change.changed_fields, change.accelerators) == (Action.UPDATE, ("max_replica_count",), {})


def test_linked_elsewhere_is_reattached_to_the_trainer_state_knows():
    live = live_of(trainer_job="other-9")
    change = the(plan(MANUAL, rec(), live))
    assert (change.action, change.changed_fields) == (Action.UPDATE, ("hot_load_trainer",))
    assert change.reason == "re-attach to job.policy"
    assert change.accelerators == {}
    drift = DEPLOYMENT_KIND.drift(ID, rec(), live)
    assert [(d.kind, d.changed_fields) for d in drift] == [("reattached", ("hot_load_trainer_job",))]
    assert "other-9" in drift[0].detail


def test_unlinked_outside_is_reattached():
    change = the(plan(MANUAL, rec(), live_of(trainer_job=None)))
    assert (change.action, change.changed_fields) == (Action.UPDATE, ("hot_load_trainer",))


def test_trainer_replaced_in_state_since_the_last_link_is_reattached():
    """State's trainer is policy-2 (a replace whose re-attach did not land): the link follows it."""
    change = the(plan(MANUAL, rec(), live_of(), ctx=context(MANUAL, trainer_job="policy-2")))
    assert (change.action, change.changed_fields) == (Action.UPDATE, ("hot_load_trainer",))


def test_repointed_at_another_trainer_updates_the_link_and_the_edge():
    spec = dataclasses.replace(MANUAL, hot_load_trainer="reference")
    change = the(plan(spec, rec(), live_of()))
    assert (change.action, change.changed_fields) == (Action.UPDATE, ("hot_load_trainer",))
    assert change.depends_on == (Address.job("reference"),)


def test_in_place_and_link_changes_go_in_one_update():
    spec = dataclasses.replace(MANUAL, max_replica_count=8)
    change = the(plan(spec, rec(), live_of(trainer_job="other-9")))
    assert change.changed_fields == ("hot_load_trainer", "max_replica_count")
    assert change.reason == ""


def test_an_update_to_a_transitional_deployment_still_updates():
    spec = dataclasses.replace(MANUAL, max_replica_count=8)
    change = the(plan(spec, rec(), live_of(dep_state=DeploymentState.UPDATING)))
    assert (change.action, change.live_state) == (Action.UPDATE, "UPDATING")


# --- without refresh: state's memory ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("phase", "observed", "action"),
    [
        ("ready", "READY", Action.NOOP),
        ("ready", None, Action.NOOP),  # unknown counts as READY: nothing re-created on a guess
        ("creating", None, Action.CREATE),
        ("ready", "CREATING", Action.WAIT),
        ("ready", "UPDATING", Action.WAIT),
        ("ready", "FAILED", Action.REPLACE),
        ("ready", "DELETED", Action.CREATE),
    ],
)
def test_without_refresh_state_stands_in_for_live(phase, observed, action):
    live = world(refreshed=False)
    change = the(plan(MANUAL, rec(phase=phase, observed=observed), live))
    assert change.action is action
    assert DEPLOYMENT_KIND.drift(ID, rec(phase=phase, observed=observed), live) == []


def test_without_refresh_the_recorded_link_is_compared():
    live = world(refreshed=False)
    assert the(plan(MANUAL, rec(trainer_job="policy-0"), live)).changed_fields == ("hot_load_trainer",)
    assert the(plan(MANUAL, rec(), live)).action is Action.NOOP


# --- a shape from the trainer's training shape -------------------------------------------------------


def test_the_trainer_shape_resolves_from_the_training_shape_version():
    change = the(plan(SHAPED, rec(SHAPED), live_of(SHAPED)))
    assert change.action is Action.NOOP
    update = the(plan(dataclasses.replace(SHAPED, max_replica_count=3), rec(SHAPED), live_of(SHAPED)))
    assert update.after is not None and update.after["deployment_shape"] == f"{DSHAPE}/versions/5"


def test_a_newer_version_of_the_same_shape_does_not_replace():
    newer = {SHAPE: dataclasses.replace(SHAPES[SHAPE], deployment_shape_version=f"{DSHAPE}/versions/6")}
    live = dataclasses.replace(live_of(SHAPED), shapes=newer)
    assert the(plan(SHAPED, rec(SHAPED), live)).action is Action.NOOP
    update = the(plan(dataclasses.replace(SHAPED, max_replica_count=3), rec(SHAPED), live))
    assert update.after is not None and update.after["deployment_shape"] == f"{DSHAPE}/versions/5"  # recorded
    created = the(plan(SHAPED, None, dataclasses.replace(world(), shapes=newer)))
    assert created.after is not None and created.after["deployment_shape"] == f"{DSHAPE}/versions/6"


def test_another_shape_from_the_trainer_replaces():
    other = {SHAPE: ShapeVersion(f"{SHAPE}/versions/4", accelerator_type=A100, accelerator_count=4,
                                 deployment_shape_version=f"{DSHAPE_OTHER}/versions/1")}  # fmt: skip
    live = dataclasses.replace(live_of(SHAPED), shapes=other)
    change = the(plan(SHAPED, rec(SHAPED), live))
    assert (change.action, change.changed_fields) == (Action.REPLACE, ("deployment_shape",))
    assert change.accelerators == {A100: 4}  # the old shape is no longer known to hold anything


def test_an_unknown_trainer_shape_is_a_problem():
    with pytest.raises(PlanProblem) as err:
        plan(SHAPED, None, world(shapes={}))
    assert "deployment shape is not known" in err.value.summary
    assert f"[deployments.{ID}]" in err.value.detail
    # Once recorded, the recorded shape stands in for an unresolved one.
    assert the(plan(SHAPED, rec(SHAPED), dataclasses.replace(live_of(SHAPED), shapes={}))).action is Action.NOOP


def test_a_training_shape_naming_no_deployment_shape_is_a_problem():
    bare = {SHAPE: dataclasses.replace(SHAPES[SHAPE], deployment_shape_version="")}
    with pytest.raises(PlanProblem):
        plan(SHAPED, None, world(shapes=bare))


# --- untracked IDs, drift, accelerators, the rest of the seam ------------------------------------------


def test_an_untracked_live_id_suggests_import():
    live = live_of()
    problem = DEPLOYMENT_KIND.untracked_problem(ID, live, set())
    assert problem is not None and f"rlorinfra import deployment.{ID} {ID}" in problem.detail
    assert "READY" in problem.detail
    assert DEPLOYMENT_KIND.untracked_problem(ID, live, {ID}) is None
    assert DEPLOYMENT_KIND.untracked_problem(ID, live_of(dep_state=DeploymentState.DELETED), set()) is None
    assert DEPLOYMENT_KIND.untracked_problem(ID, world(), set()) is None


@pytest.mark.parametrize(
    ("live", "phase", "kinds"),
    [
        (live_of(), "ready", []),
        (live_of(dep_state=None), "ready", ["deleted"]),
        (live_of(dep_state=None), "creating", []),  # our own create never landed
        (live_of(dep_state=DeploymentState.DELETED), "ready", ["tombstoned"]),
        (live_of(dep_state=DeploymentState.DELETING), "ready", ["tombstoned"]),
        (live_of(dep_state=DeploymentState.FAILED), "ready", ["failed"]),
        (live_of(max_replica_count=9), "ready", ["scaled"]),
        (live_of(trainer_job="other-9"), "ready", ["reattached"]),
        (live_of(region="US_IOWA_1"), "ready", ["changed"]),
        (live_of(description="edited in the console"), "ready", ["changed"]),
    ],
    ids=[
        "none",
        "deleted",
        "own-create",
        "deleted-state",
        "deleting",
        "failed",
        "scaled",
        "reattached",
        "region",
        "description",
    ],  # fmt: skip
)
def test_drift(live, phase, kinds):
    drift = DEPLOYMENT_KIND.drift(ID, rec(phase=phase), live)
    assert [d.kind for d in drift] == kinds
    assert all(d.address == ADDRESS and d.job_id == ID for d in drift)


def test_a_failed_deployment_already_recorded_as_failed_is_no_new_drift():
    assert DEPLOYMENT_KIND.drift(ID, rec(observed="FAILED"), live_of(dep_state=DeploymentState.FAILED)) == []


def test_a_server_stored_version_of_the_recorded_shape_is_no_drift():
    live = live_of(SHAPED, deployment_shape=f"{DSHAPE}/versions/7", accelerator_type=H100)
    assert DEPLOYMENT_KIND.drift(ID, rec(SHAPED), live) == []


def test_accelerators_floor_is_min_replicas_times_per_replica():
    assert DEPLOYMENT_KIND.accelerators(resolved(MANUAL), world()) == MANUAL_FLOOR
    assert DEPLOYMENT_KIND.accelerators({**resolved(SHAPED), "min_replica_count": 3}, world()) == {H100: 24}
    assert DEPLOYMENT_KIND.accelerators(resolved(SHAPED), world(shapes={})) == {}
    assert per_replica({"deployment_shape": DSHAPE_OTHER}, SHAPES) == {}
    assert per_replica({"deployment_shape": f"{DSHAPE}/versions/9"}, SHAPES) == {H100: 8}  # any version of it


def test_identity_and_the_rest_of_the_seam():
    assert DEPLOYMENT_KIND.kind is Kind.DEPLOYMENT
    assert set(DEPLOYMENT_KIND.config_fields) == set(DeploymentSpec.__dataclass_fields__)
    assert DEPLOYMENT_KIND.canonical_spec(SHAPED) == SHAPED.spec()
    assert SHAPED.spec()["deployment_shape_from"] == "trainer"
    assert DEPLOYMENT_KIND.dependencies(MANUAL) == (TRAINER_ADDRESS,)
    assert DEPLOYMENT_KIND.dependencies(dataclasses.replace(MANUAL, hot_load_trainer=None)) == ()
    assert tuple(DEPLOYMENT_KIND.tracked_ids(rec())) == (ID,)
    assert DEPLOYMENT_KIND.plan_leftovers(ID, rec(), live_of()) == []


# --- after_dependencies: the trainer's change seen by the deployment ------------------------------------


def _job_change(action: Action, job_id: str | None) -> Change:
    """The trainer's change in the same plan."""
    return Change(name="policy", action=action, job_id=job_id)


@pytest.mark.parametrize(
    ("trainer", "reattach"),
    [
        (_job_change(Action.REPLACE, "policy-1"), True),
        (_job_change(Action.CREATE, None), True),  # re-created after an out-of-band deletion: a new ID
        (_job_change(Action.CREATE, "policy-1"), False),  # an interrupted create keeps its recorded ID
        (_job_change(Action.RESUME, "policy-1"), False),  # preempted and resumed: the link holds
        (_job_change(Action.WAIT, "policy-1"), False),
        (_job_change(Action.NOOP, "policy-1"), False),
    ],
    ids=["replace", "create-new-id", "create-same-id", "resume", "wait", "noop"],
)
@pytest.mark.parametrize("own", [Action.NOOP, Action.WAIT, Action.UPDATE])
def test_a_kept_deployment_reattaches_to_a_trainer_with_a_new_job_id(trainer, reattach, own):
    fields = ("max_replica_count",) if own is Action.UPDATE else ()
    change = Change(name=ID, action=own, kind=Kind.DEPLOYMENT, job_id=ID, changed_fields=fields,
                    reason="r" if own is Action.UPDATE else "", depends_on=(TRAINER_ADDRESS,))  # fmt: skip
    after = DEPLOYMENT_KIND.after_dependencies(change, [trainer], context())
    if not reattach:
        assert after == change
        return
    assert after.action is Action.UPDATE
    assert after.changed_fields == tuple(sorted({*fields, "hot_load_trainer"}))
    assert after.reason.endswith("re-attach to the new job.policy")
    assert after.reason.startswith("r; ") == (own is Action.UPDATE)


@pytest.mark.parametrize("own", [Action.CREATE, Action.REPLACE, Action.DELETE])
def test_a_created_replaced_or_deleted_deployment_needs_no_reattach(own):
    change = Change(name=ID, action=own, kind=Kind.DEPLOYMENT, job_id=ID, depends_on=(TRAINER_ADDRESS,))
    assert DEPLOYMENT_KIND.after_dependencies(change, [_job_change(Action.REPLACE, "policy-1")], context()) == change
