"""Planner tables for ttl and protection recorded in state (DESIGN.md §4, §7; issue 17 items 5-6).

The clock is an argument of ``make_plan``: every case here passes ``now``.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

import pytest

from rlorinfra.config.model import DeploymentSpec, ShapeSource
from rlorinfra.errors import PlanError
from rlorinfra.model.address import Address, Kind
from rlorinfra.model.deployments import DeploymentState, LiveDeployment
from rlorinfra.plan.model import Action, Lifecycle
from rlorinfra.plan.planner import make_plan
from rlorinfra.state.model import DeploymentRecord
from tests.plan.planworld import ACCOUNT, MODEL, declared, desired, live_job, record, state, world

NOW = datetime(2026, 12, 7, 8, 0, 0, tzinfo=UTC)
CREATED = "2026-12-06T20:00:00Z"  # 12 h before NOW
TRAINER = declared("trainer")


def _record(spec=TRAINER, **fields):
    return dataclasses.replace(record(spec, "t-1"), created_at=CREATED, **fields)


def _plan(spec, rec, *, live=None, **kwargs):
    specs = desired(spec) if spec is not None else {}
    return make_plan(specs, state(trainer=rec), live or world(live_job("t-1", "trainer")), now=NOW, **kwargs)


def _only(plan):
    (change,) = plan.changes
    return change


@pytest.fixture
def deployment_world():
    """A trainer and a deployment hot-loading it, both managed and live; the trainer's expiry given."""

    def make(expires_at: str | None):
        shape = f"accounts/{ACCOUNT}/deploymentShapes/rollout/versions/1"
        spec = DeploymentSpec(
            deployment_id="rollout",
            base_model=MODEL,
            shape_source=ShapeSource.DECLARED,
            deployment_shape=shape,
            hot_load_trainer="trainer",
        )
        job_name = f"accounts/{ACCOUNT}/rlorTrainerJobs/t-1"
        dep = DeploymentRecord(
            deployment_id="rollout",
            deployment_name=f"accounts/{ACCOUNT}/deployments/rollout",
            spec=spec.spec(),
            phase="ready",
            observed_state="READY",
            hot_load_trainer_job=job_name,
            deployment_shape_version=shape,
            created_at=CREATED,
            depends_on=(Address.job("trainer"),),
        )
        st = state(trainer=_record(expires_at=expires_at)).with_record(Address(Kind.DEPLOYMENT, "rollout"), dep)
        live = dataclasses.replace(
            world(live_job("t-1", "trainer")),
            deployments={
                "rollout": LiveDeployment(
                    "rollout", dep.deployment_name, DeploymentState.READY, hot_load_trainer_job=job_name
                )
            },
        )
        return desired(TRAINER), {Kind.DEPLOYMENT: {"rollout": spec}}, st, live

    return make


# --- ttl ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ttl_s", "expires_at", "action", "reason", "updates"),
    [
        # not yet: 12 h 1 s after creation; noted only within the hour
        (12 * 3600 + 1, "2026-12-07T08:00:01Z", Action.NOOP, "job is JOB_STATE_RUNNING", ()),
        # just expired, to the second
        (12 * 3600, "2026-12-07T08:00:00Z", Action.DELETE, "ttl expired 0 s ago", ()),
        # expired 20 minutes ago
        (12 * 3600 - 1200, "2026-12-07T07:40:00Z", Action.DELETE, "ttl expired 20 min ago", ()),
    ],
)
def test_a_recorded_expiry_against_the_clock(ttl_s, expires_at, action, reason, updates):
    change = _only(_plan(declared("trainer", ttl=ttl_s), _record(expires_at=expires_at)))
    assert (change.action, change.reason, change.state_updates) == (action, reason, updates)


def test_an_expired_job_is_deleted_not_created_again_in_the_same_plan():
    plan = _plan(declared("trainer", ttl=3600), _record(expires_at="2026-12-06T21:00:00Z"))
    assert [(c.action, c.job_id) for c in plan.changes] == [(Action.DELETE, "t-1")]
    assert plan.changes[0].reason == "ttl expired 11 h ago"
    assert plan.changes[0].accelerators == {"NVIDIA_H100_80GB": -8}
    assert any("the next plan creates a new one" in note for note in plan.notes)


def test_after_the_expiry_delete_the_next_plan_creates_a_new_one_while_the_block_stays():
    """The rule without tombstones: nothing remembers a deleted resource, so a declared one is created again."""
    spec = declared("trainer", ttl=3600)
    plan = make_plan(desired(spec), state(), world(), now=NOW)
    assert [(c.action, c.lifecycle) for c in plan.changes] == [(Action.CREATE, Lifecycle(ttl_s=3600))]


def test_an_expired_job_already_gone_is_forgotten_with_both_reasons():
    change = _only(_plan(TRAINER, _record(expires_at="2026-12-07T07:00:00Z"), live=world(missing=("t-1",))))
    assert change.action is Action.DELETE
    assert change.reason == "ttl expired 1 h ago; already deleted outside rlorinfra; forget it"


def test_expiring_within_the_hour_is_noted_and_later_is_not():
    soon = _plan(declared("trainer", ttl=12 * 3600 + 1800), _record(expires_at="2026-12-07T08:30:00Z"))
    assert soon.notes == ("job.trainer expires in 30 min (2026-12-07T08:30:00Z); a plan after that deletes it.",)
    later = _plan(declared("trainer", ttl=14 * 3600), _record(expires_at="2026-12-07T10:00:00Z"))
    assert later.notes == ()


@pytest.mark.parametrize(
    ("recorded", "ttl_s", "updates"),
    [
        (None, 24 * 3600, ("ttl: expires 2026-12-07T20:00:00Z",)),  # added: from created_at, not from now
        ("2026-12-07T20:00:00Z", 48 * 3600, ("ttl: expires 2026-12-08T20:00:00Z",)),  # changed: recomputed
        ("2026-12-07T20:00:00Z", None, ("ttl: removed, never expires",)),  # removed: cleared
        ("2026-12-07T20:00:00Z", 24 * 3600, ()),  # unchanged: nothing to do
    ],
)
def test_ttl_added_changed_removed_is_a_state_only_update(recorded, ttl_s, updates):
    plan = _plan(declared("trainer", ttl=ttl_s), _record(expires_at=recorded))
    change = _only(plan)
    assert (change.action, change.state_updates) == (Action.NOOP, updates)
    assert change.lifecycle == Lifecycle(protected=False, ttl_s=ttl_s)
    assert plan.has_changes is bool(updates) and plan.actionable == ()


def test_a_new_ttl_already_past_deletes_on_the_following_plan_not_this_one():
    """ttl is counted from creation: shortening it records the expiry; the next plan acts on it."""
    change = _only(_plan(declared("trainer", ttl=3600), _record()))
    assert (change.action, change.state_updates) == (Action.NOOP, ("ttl: expires 2026-12-06T21:00:00Z",))


def test_a_create_carries_the_ttl_for_apply_to_count_from_the_creation():
    change = _only(make_plan(desired(declared("trainer", ttl=60, prevent_destroy=True)), state(), world(), now=NOW))
    assert change.action is Action.CREATE and change.state_updates == ()
    assert change.lifecycle == Lifecycle(protected=True, ttl_s=60)


def test_without_a_clock_nothing_expires():
    plan = make_plan(desired(TRAINER), state(trainer=_record(expires_at=CREATED)), world(live_job("t-1", "trainer")))
    assert _only(plan).action is Action.NOOP


def test_a_dependent_is_deleted_first_when_its_trainer_expires(deployment_world):
    specs, others, st, live = deployment_world(expires_at="2026-12-07T07:40:00Z")
    plan = make_plan(specs, st, live, desired_by_kind=others, now=NOW)
    assert [(str(c.address), c.action, c.reason) for c in plan.changes] == [
        ("deployment.rollout", Action.DELETE, "depends on job.trainer, whose ttl expired"),
        ("job.trainer", Action.DELETE, "ttl expired 20 min ago"),
    ]


# --- protection ----------------------------------------------------------------------------------


def test_prevent_destroy_set_on_an_existing_job_is_a_state_only_update_and_false_clears_it():
    on = _only(_plan(declared("trainer", prevent_destroy=True), _record()))
    assert on.state_updates == ("protected: true",) and on.lifecycle == Lifecycle(protected=True)
    off = _only(_plan(declared("trainer", prevent_destroy=False), _record(protected=True)))
    assert off.state_updates == ("protected: false (prevent_destroy = false)",)


def test_removing_the_block_of_a_protected_job_fails_naming_both_ways_out():
    with pytest.raises(PlanError) as err:
        _plan(None, _record(protected=True))
    assert err.value.summary == "job.trainer is protected, but this plan would delete it (not in configuration)"
    assert "declare [jobs.trainer] again with `prevent_destroy = false` and run `rlorinfra apply`" in err.value.detail
    assert "`rlorinfra state unprotect job.trainer`" in err.value.detail


def test_once_unprotected_the_removed_block_plans_a_delete():
    change = _only(_plan(None, _record(protected=False)))
    assert (change.action, change.reason) == (Action.DELETE, "not in configuration")


def test_a_protected_job_gone_outside_rlorinfra_is_still_forgotten():
    change = _only(_plan(None, _record(protected=True), live=world(missing=("t-1",))))
    assert change.action is Action.DELETE


def test_an_expired_protected_job_fails_the_plan():
    with pytest.raises(PlanError, match=r"job.trainer is protected, but this plan would delete it \(ttl expired"):
        _plan(declared("trainer", prevent_destroy=True, ttl=60), _record(protected=True, expires_at=CREATED))


def test_destroy_refuses_a_protected_record_even_without_its_block():
    with pytest.raises(PlanError, match="job.trainer is protected"):
        _plan(None, _record(protected=True), destroy=True)


def test_destroy_exclude_protected_destroys_the_rest_with_a_note():
    other = dataclasses.replace(record(declared("other"), "o-1"), created_at=CREATED)
    st = state(trainer=_record(protected=True), other=other)
    live = world(live_job("t-1", "trainer"), live_job("o-1", "other"))
    plan = make_plan({}, st, live, destroy=True, exclude_protected=True, now=NOW)
    assert [(c.address, c.action) for c in plan.changes] == [(Address.job("other"), Action.DELETE)]
    assert plan.notes == (
        "Left out of this destroy because they are protected: job.trainer (`rlorinfra state unprotect` to include).",
    )
    declared_guard = make_plan(
        desired(declared("other", prevent_destroy=True)), st, live, destroy=True, exclude_protected=True, now=NOW
    )
    assert declared_guard.changes == () and "job.other, job.trainer" in declared_guard.notes[0]


def test_replacing_a_protected_job_still_fails_as_before():
    with pytest.raises(PlanError, match="would replace it"):
        _plan(declared("trainer", prevent_destroy=True, lora_rank=16), _record(protected=True))


def test_the_same_deployment_world_without_an_expiry_changes_nothing(deployment_world):
    specs, others, st, live = deployment_world(expires_at=None)
    plan = make_plan(specs, st, live, desired_by_kind=others, now=NOW)
    assert [c.action for c in plan.changes] == [Action.NOOP, Action.NOOP] and not plan.has_changes


def _with_deployment_record(st, **fields):
    address = Address(Kind.DEPLOYMENT, "rollout")
    return st.with_record(address, dataclasses.replace(st.record(address), **fields))


def test_a_deployment_whose_own_ttl_expired_is_deleted_and_its_trainer_kept(deployment_world):
    specs, others, st, live = deployment_world(expires_at=None)
    st = _with_deployment_record(st, expires_at="2026-12-07T06:00:00Z")
    plan = make_plan(specs, st, live, desired_by_kind=others, now=NOW)
    assert [(str(c.address), c.action, c.reason) for c in plan.changes] == [
        ("deployment.rollout", Action.DELETE, "ttl expired 2 h ago"),
        ("job.trainer", Action.NOOP, "job is JOB_STATE_RUNNING"),
    ]


def test_a_deployment_ttl_and_protection_are_state_only_updates(deployment_world):
    specs, others, st, live = deployment_world(expires_at=None)
    guarded = {Kind.DEPLOYMENT: {"rollout": dataclasses.replace(others[Kind.DEPLOYMENT]["rollout"], ttl=3600,
                                                                   prevent_destroy=True)}}  # fmt: skip
    plan = make_plan(specs, st, live, desired_by_kind=guarded, now=NOW)
    (change,) = plan.state_only
    assert str(change.address) == "deployment.rollout"
    assert change.state_updates == ("protected: true", "ttl: expires 2026-12-06T21:00:00Z")


def test_removing_a_protected_deployments_block_fails_the_plan(deployment_world):
    specs, _, st, live = deployment_world(expires_at=None)
    st = _with_deployment_record(st, protected=True)
    with pytest.raises(PlanError) as err:
        make_plan(specs, st, live, now=NOW)
    assert err.value.summary == "deployment.rollout is protected, but this plan would delete it (not in configuration)"
    assert "`rlorinfra state unprotect deployment.rollout`" in err.value.detail


@pytest.mark.parametrize(
    ("spec", "rec", "refusal"),
    [
        (None, _record(protected=True), "job.trainer is protected, but this plan would delete it"),
        (declared("trainer", prevent_destroy=True, ttl=60), _record(protected=True, expires_at=CREATED), "ttl expired"),
        (declared("trainer", prevent_destroy=True, lora_rank=16), _record(protected=True), "would replace it"),
    ],
)
def test_exclude_protected_outside_destroy_holds_the_protected_one_and_plans_the_rest(spec, rec, refusal):
    """watch's plan: a protected delete or replace is left unchanged (held, noted), the other trainer resumes."""
    other = dataclasses.replace(record(declared("other"), "o-1"), created_at=CREATED)
    specs = {**(desired(spec) if spec is not None else {}), **desired(declared("other"))}
    live = world(live_job("t-1", "trainer"), live_job("o-1", "other", "JOB_STATE_FAILED"))
    with pytest.raises(PlanError, match=refusal):  # apply and plan: refused as before
        make_plan(specs, state(trainer=rec, other=other), live, now=NOW)
    plan = make_plan(specs, state(trainer=rec, other=other), live, now=NOW, exclude_protected=True)
    assert [(c.address, c.action) for c in plan.actionable] == [(Address.job("other"), Action.RESUME)]
    ((address, why),) = plan.held
    assert address == Address.job("trainer") and refusal in why
    assert any("left unchanged (protected)" in note for note in plan.notes)
