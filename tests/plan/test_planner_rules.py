"""Planner errors, options (--target, --replace, --destroy, --refresh-only,
--no-refresh) and drift detection."""

from __future__ import annotations

import pytest

from rlorinfra.errors import PlanError
from rlorinfra.plan.model import Action
from rlorinfra.plan.planner import make_plan
from tests.plan.planworld import (
    SHAPE,
    declared,
    desired,
    live_job,
    record,
    state,
    world,
)

JOB = declared("trainer")
GUARDED = declared("trainer", prevent_destroy=True)


def _actions(plan) -> dict[str, Action]:
    return {c.name: c.action for c in plan.changes}


# --- live jobs not in state ----------------------------------------------------------------


def test_untracked_live_job_with_declared_name_suggests_import():
    live = world(live_job("abc123", "trainer"))
    with pytest.raises(PlanError) as err:
        make_plan(desired(JOB), state(), live)
    assert 'Job "trainer" already exists' in err.value.summary
    assert "`rlorinfra import trainer abc123`" in err.value.detail


def test_two_untracked_live_jobs_are_ambiguous():
    live = world(live_job("abc123", "trainer"), live_job("def456", "trainer", "JOB_STATE_CANCELLED"))
    with pytest.raises(PlanError) as err:
        make_plan(desired(JOB), state(), live)
    assert "ambiguous" in err.value.summary
    assert "abc123" in err.value.detail and "def456" in err.value.detail
    assert "`rlorinfra import trainer abc123`" in err.value.detail
    assert "delete the others" in err.value.detail


@pytest.mark.parametrize("gone", ["JOB_STATE_DELETED", "JOB_STATE_ARCHIVED", "JOB_STATE_DELETING"])
def test_untracked_jobs_being_deleted_do_not_block_a_create(gone):
    plan = make_plan(desired(JOB), state(), world(live_job("old-1", "trainer", gone)))
    assert _actions(plan) == {"trainer": Action.CREATE}


def test_untracked_jobs_with_undeclared_names_are_ignored():
    plan = make_plan(desired(JOB), state(), world(live_job("x-1", "someone-elses-job")))
    assert _actions(plan) == {"trainer": Action.CREATE}
    assert plan.drift == ()


def test_a_job_tracked_under_another_name_is_not_untracked():
    # `state mv` renamed it: the live display name is still the old one.
    plan = make_plan(
        desired(declared("trainer"), declared("renamed")),
        state(renamed=record(JOB, "t-1")),
        world(live_job("t-1", "trainer")),
    )
    assert _actions(plan)["trainer"] is Action.CREATE


def test_untracked_check_is_skipped_without_refresh_and_in_refresh_only_or_destroy():
    live = world(live_job("abc123", "trainer"))
    assert make_plan(desired(JOB), state(), live, refresh_only=True).changes == ()
    assert make_plan(desired(JOB), state(), live, destroy=True).changes == ()
    no_refresh = world(live_job("abc123", "trainer"), refreshed=False)
    assert _actions(make_plan(desired(JOB), state(), no_refresh)) == {"trainer": Action.CREATE}


# --- prevent_destroy ------------------------------------------------------------------------


def test_prevent_destroy_blocks_a_replacement():
    spec = declared("trainer", prevent_destroy=True, lora_rank=16)
    with pytest.raises(PlanError) as err:
        make_plan(desired(spec), state(trainer=record(JOB, "t-1")), world(live_job("t-1", "trainer")))
    assert 'Job "trainer" has prevent_destroy set, but this plan would replace it' == err.value.summary
    assert "lora_rank" in err.value.detail
    assert "remove `prevent_destroy = true` from [jobs.trainer]" in err.value.detail


@pytest.mark.parametrize("dead", ["JOB_STATE_EARLY_STOPPED", "JOB_STATE_EXPIRED"])
def test_prevent_destroy_blocks_replacing_a_dead_job(dead):
    with pytest.raises(PlanError, match="would replace it"):
        make_plan(desired(GUARDED), state(trainer=record(JOB, "t-1")), world(live_job("t-1", "trainer", dead)))


def test_prevent_destroy_blocks_replace_option():
    with pytest.raises(PlanError, match="would replace it"):
        make_plan(
            desired(GUARDED), state(trainer=record(JOB, "t-1")), world(live_job("t-1", "trainer")), replace=["trainer"]
        )


def test_prevent_destroy_blocks_destroy_but_not_forgetting_a_gone_job():
    tracked = state(trainer=record(JOB, "t-1"))
    with pytest.raises(PlanError, match="would delete it"):
        make_plan(desired(GUARDED), tracked, world(live_job("t-1", "trainer")), destroy=True)
    plan = make_plan(desired(GUARDED), tracked, world(missing=("t-1",)), destroy=True)
    assert _actions(plan) == {"trainer": Action.DELETE}


def test_prevent_destroy_does_not_block_resume_or_recreate():
    tracked = state(trainer=record(JOB, "t-1"))
    assert _actions(make_plan(desired(GUARDED), tracked, world(live_job("t-1", "trainer", "JOB_STATE_FAILED")))) == {
        "trainer": Action.RESUME
    }
    assert _actions(make_plan(desired(GUARDED), tracked, world(missing=("t-1",)))) == {"trainer": Action.CREATE}


def test_every_problem_is_reported_at_once():
    specs = desired(declared("a", prevent_destroy=True, lora_rank=16), declared("b"))
    tracked = state(a=record(declared("a"), "a-1"))
    live = world(live_job("a-1", "a"), live_job("b-9", "b"))
    with pytest.raises(PlanError) as err:
        make_plan(specs, tracked, live, targets=["a", "b", "nope"])
    assert err.value.summary == "Cannot make the plan: 3 problems"
    lines = err.value.detail.splitlines()
    assert len(lines) == 3 and all(line.startswith("- ") for line in lines)
    assert '--target "nope"' in err.value.detail
    assert "rlorinfra import b b-9" in err.value.detail
    assert 'Job "a" has prevent_destroy set' in err.value.detail


# --- --target, --replace, --destroy, --refresh-only, --no-refresh -----------------------------------


def test_targets_plan_only_those_jobs():
    specs = desired(declared("a"), declared("b"))
    tracked = state(c=record(declared("c"), "c-1"))
    plan = make_plan(specs, tracked, world(live_job("c-1", "c", "JOB_STATE_FAILED")), targets=["b", "c"])
    assert _actions(plan) == {"b": Action.CREATE, "c": Action.DELETE}
    assert [d.name for d in plan.drift] == ["c"]


def test_unknown_target_is_an_error_with_a_hint():
    with pytest.raises(PlanError) as err:
        make_plan(desired(JOB), state(), world(), targets=["trainr"])
    assert err.value.summary == '--target "trainr" names no declared or managed job'
    assert 'Did you mean "trainer"?' in err.value.detail


def test_unknown_replace_is_an_error():
    with pytest.raises(PlanError, match='--replace "ghost" names no declared or managed job'):
        make_plan(desired(JOB), state(), world(), replace=["ghost"])


@pytest.mark.parametrize("mode", ["destroy", "refresh_only"])
def test_replace_cannot_be_combined_with_destroy_or_refresh_only(mode):
    with pytest.raises(PlanError, match="--replace cannot be combined"):
        make_plan(
            desired(JOB),
            state(trainer=record(JOB, "t-1")),
            world(live_job("t-1", "trainer")),
            replace=["trainer"],
            **{mode: True},
        )


def test_replace_outside_targets_is_an_error():
    specs = desired(declared("a"), declared("b"))
    with pytest.raises(PlanError, match='--replace "b" is outside the --target list'):
        make_plan(specs, state(), world(), targets=["a"], replace=["b"])


def test_replace_of_an_undeclared_job_is_an_error():
    with pytest.raises(PlanError, match='Cannot replace job "trainer": it is not in the configuration'):
        make_plan({}, state(trainer=record(JOB, "t-1")), world(live_job("t-1", "trainer")), replace=["trainer"])


def test_replace_of_a_declared_stopped_job_is_an_error():
    spec = declared("trainer", desired_state="stopped")
    with pytest.raises(PlanError, match="declared stopped"):
        make_plan(
            desired(spec), state(trainer=record(JOB, "t-1")), world(live_job("t-1", "trainer")), replace=["trainer"]
        )


def test_replace_of_a_job_not_yet_created_just_creates_it():
    plan = make_plan(desired(JOB), state(), world(), replace=["trainer"])
    assert _actions(plan) == {"trainer": Action.CREATE}


def test_destroy_deletes_every_managed_job_and_creates_nothing():
    specs = desired(declared("a"), declared("new"))
    tracked = state(a=record(declared("a"), "a-1"), old=record(declared("old"), "old-1"))
    plan = make_plan(specs, tracked, world(live_job("a-1", "a"), live_job("old-1", "old")), destroy=True)
    assert _actions(plan) == {"a": Action.DELETE, "old": Action.DELETE}
    assert plan.destroy is True
    assert all(c.reason == "" for c in plan.changes)


def test_refresh_only_reports_drift_and_no_changes():
    tracked = state(trainer=record(JOB, "t-1"))
    plan = make_plan(desired(declared("trainer", lora_rank=16)), tracked, world(missing=("t-1",)), refresh_only=True)
    assert plan.changes == ()
    assert plan.refresh_only is True
    assert [d.kind for d in plan.drift] == ["deleted"]


def test_no_refresh_uses_recorded_state_and_reports_no_drift():
    tracked = state(trainer=record(JOB, "t-1", observed="JOB_STATE_FAILED"))
    plan = make_plan(desired(JOB), tracked, world(refreshed=False))
    assert _actions(plan) == {"trainer": Action.RESUME}
    assert plan.drift == ()


def test_no_refresh_with_an_interrupted_create_retries_it_by_id():
    tracked = state(trainer=record(JOB, "t-1", phase="creating", observed=None))
    [change] = make_plan(desired(JOB), tracked, world(refreshed=False)).changes
    assert (change.action, change.job_id) == (Action.CREATE, "t-1")


def test_no_refresh_without_any_observation_waits():
    tracked = state(trainer=record(JOB, "t-1", phase="provisioning", observed=None))
    assert _actions(make_plan(desired(JOB), tracked, world(refreshed=False))) == {"trainer": Action.WAIT}


# --- drift ---------------------------------------------------------------------------------------


def _drift(recorded: str | None, live_state: str, *, phase: str = "ready", code: str = "", message: str = ""):
    tracked = state(trainer=record(JOB, "t-1", phase=phase, observed=recorded))
    live = world(live_job("t-1", "trainer", live_state, code=code, message=message))
    return make_plan(desired(JOB), tracked, live).drift


@pytest.mark.parametrize(
    ("recorded", "live_state", "kwargs", "kind"),
    [
        ("JOB_STATE_RUNNING", "JOB_STATE_FAILED", {"code": "UNAVAILABLE"}, "preempted"),
        ("JOB_STATE_RUNNING", "JOB_STATE_FAILED", {"message": "Pod was preempted"}, "preempted"),
        ("JOB_STATE_RUNNING", "JOB_STATE_FAILED", {"code": "INTERNAL", "message": "OOM"}, "failed"),
        ("JOB_STATE_RUNNING", "JOB_STATE_CANCELLED", {}, "cancelled"),
        ("JOB_STATE_RUNNING", "JOB_STATE_IDLE", {}, "idle"),
        ("JOB_STATE_RUNNING", "JOB_STATE_PAUSED", {}, "stopped"),
        ("JOB_STATE_RUNNING", "JOB_STATE_PENDING", {}, "state"),
        ("JOB_STATE_CREATING", "JOB_STATE_FAILED", {}, "failed"),
        ("JOB_STATE_RUNNING", "JOB_STATE_ARCHIVED", {}, "tombstoned"),
        (None, "JOB_STATE_RUNNING", {"phase": "creating"}, "creating"),
    ],
)
def test_drift_kinds(recorded, live_state, kwargs, kind):
    [drift] = _drift(recorded, live_state, **kwargs)
    assert drift.kind == kind
    assert (drift.name, drift.job_id, drift.recorded_state, drift.live_state) == (
        "trainer",
        "t-1",
        recorded,
        live_state,
    )


@pytest.mark.parametrize(
    ("recorded", "live_state", "phase"),
    [
        ("JOB_STATE_RUNNING", "JOB_STATE_RUNNING", "ready"),
        ("JOB_STATE_CREATING", "JOB_STATE_RUNNING", "provisioning"),  # it progressed by itself
        ("JOB_STATE_PENDING", "JOB_STATE_CREATING", "provisioning"),
        ("JOB_STATE_IDLE", "JOB_STATE_RUNNING", "ready"),
        ("JOB_STATE_CANCELLING", "JOB_STATE_CANCELLED", "stopped"),  # our own cancel settled
    ],
)
def test_expected_progress_is_not_drift(recorded, live_state, phase):
    assert _drift(recorded, live_state, phase=phase) == ()


def test_preempted_drift_detail_names_states_and_message():
    [drift] = _drift("JOB_STATE_RUNNING", "JOB_STATE_FAILED", code="UNAVAILABLE", message="pod preempted")
    assert drift.detail == "was preempted: JOB_STATE_RUNNING -> JOB_STATE_FAILED (pod preempted)"


def test_deleted_drift_for_a_404():
    plan = make_plan(desired(JOB), state(trainer=record(JOB, "t-1")), world(missing=("t-1",)))
    [drift] = plan.drift
    assert (drift.kind, drift.live_state, drift.recorded_state) == ("deleted", None, "JOB_STATE_RUNNING")


def test_changed_spec_field_is_drift_not_a_replacement():
    live = world(live_job("t-1", "trainer", spec={"base_model": "accounts/x/models/other", "training_shape": SHAPE}))
    plan = make_plan(desired(JOB), state(trainer=record(JOB, "t-1")), live)
    [drift] = plan.drift
    assert drift.kind == "changed"
    assert drift.changed_fields == ("base_model",)
    assert '"accounts/fireworks/models/qwen3-8b" -> "accounts/x/models/other"' in drift.detail
    assert _actions(plan) == {"trainer": Action.NOOP}


def test_spec_drift_ignores_shape_owned_and_unechoed_fields():
    spec = declared("trainer", max_context_length=8192)
    live_spec = {"max_context_length": 65536, "training_shape": f"{SHAPE}/versions/7"}  # no base_model echoed
    plan = make_plan(
        desired(spec), state(trainer=record(spec, "t-1")), world(live_job("t-1", "trainer", spec=live_spec))
    )
    assert plan.drift == ()


def test_spec_drift_compares_max_context_length_on_the_manual_path():
    spec = declared("trainer", accelerator_type="NVIDIA_H100_80GB", max_context_length=8192)
    live = world(live_job("t-1", "trainer", spec={"max_context_length": 4096}))
    [drift] = make_plan(desired(spec), state(trainer=record(spec, "t-1")), live).drift
    assert drift.changed_fields == ("max_context_length",)


def test_drift_never_includes_jobs_not_in_state():
    plan = make_plan({}, state(), world(live_job("x-1", "x", "JOB_STATE_FAILED")))
    assert plan.drift == () and plan.changes == ()
