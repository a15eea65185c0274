"""The trainer job's ResourceKind, called directly (the full decision table runs through
``make_plan`` in ``tests/plan/test_planner_table.py``)."""

from __future__ import annotations

import dataclasses

import pytest

from rlorinfra.config.model import JobSpec
from rlorinfra.model.address import Address, Kind
from rlorinfra.plan.kinds.job import JOB_KIND
from rlorinfra.plan.model import Action
from rlorinfra.plan.problems import PlanProblem
from tests.plan.planworld import A100, H100, declared, live_job, record, world

JOB = declared("trainer")
REC = record(JOB, "trainer-1")


def test_identity_and_config_fields():
    assert JOB_KIND.kind is Kind.JOB
    assert {"display_name", "base_model", "training_shape", "desired_state"} <= set(JOB_KIND.config_fields)
    assert set(JOB_KIND.config_fields) == set(JobSpec.__dataclass_fields__)


def test_canonical_spec_is_the_job_spec():
    assert JOB_KIND.canonical_spec(JOB) == JOB.spec()


@pytest.mark.parametrize(
    ("spec", "rec", "live", "force_replace", "action"),
    [
        (JOB, None, world(), False, Action.CREATE),
        (declared("trainer", desired_state="stopped"), None, world(), False, Action.NOOP),
        (JOB, REC, world(live_job("trainer-1", "trainer", healthy=True)), False, Action.NOOP),
        (JOB, REC, world(live_job("trainer-1", "trainer", healthy=True)), True, Action.REPLACE),
        (JOB, REC, world(live_job("trainer-1", "trainer", "JOB_STATE_FAILED")), False, Action.RESUME),
        (None, REC, world(live_job("trainer-1", "trainer")), False, Action.DELETE),
    ],
    ids=["new", "new-stopped", "ready", "replace-requested", "failed-resumes", "undeclared-deletes"],
)
def test_plan_is_the_decision_table(spec, rec, live, force_replace, action):
    change = JOB_KIND.plan("trainer", spec, rec, live, force_replace=force_replace)
    assert change is not None
    assert (change.action, change.address) == (action, Address.job("trainer"))


def test_nothing_declared_nothing_recorded_is_no_change():
    assert JOB_KIND.plan("trainer", None, None, world(), force_replace=False) is None


def test_plan_destroy_deletes_and_honours_prevent_destroy():
    change = JOB_KIND.plan_destroy("trainer", JOB, REC, world(live_job("trainer-1", "trainer")))
    assert (change.action, change.job_id) == (Action.DELETE, "trainer-1")
    guarded = declared("trainer", prevent_destroy=True)
    with pytest.raises(PlanProblem) as err:
        JOB_KIND.plan_destroy("trainer", guarded, REC, world(live_job("trainer-1", "trainer")))
    assert "prevent_destroy" in err.value.summary


def test_leftovers_are_the_deposed_jobs():
    rec = dataclasses.replace(REC, job_id="trainer-2", deposed_job_ids=("trainer-1",))
    live = world(live_job("trainer-1", "trainer"), live_job("trainer-2", "trainer"))
    assert [(c.action, c.job_id) for c in JOB_KIND.plan_leftovers("trainer", rec, live)] == [
        (Action.DELETE, "trainer-1")
    ]
    assert JOB_KIND.plan_leftovers("trainer", None, live) == []
    assert set(JOB_KIND.tracked_ids(rec)) == {"trainer-1", "trainer-2"}


def test_drift_carries_the_job_address():
    drift = JOB_KIND.drift("trainer", REC, world())
    assert [(d.kind, d.address) for d in drift] == [("deleted", Address.job("trainer"))]
    assert JOB_KIND.drift("trainer", REC, world(refreshed=False)) == []


def test_accelerators_manual_and_shape_paths():
    manual = {"accelerator_type": A100, "accelerator_count": 4, "node_count": 2}
    assert JOB_KIND.accelerators(manual, world()) == {A100: 8}
    assert JOB_KIND.accelerators(JOB.spec(), world()) == {H100: 8}
    assert JOB_KIND.accelerators({"base_model": "m"}, world()) == {}


def test_untracked_problem_suggests_import():
    live = world(live_job("other-1", "trainer"))
    problem = JOB_KIND.untracked_problem("trainer", live, set())
    assert problem is not None and "rlorinfra import trainer other-1" in problem.detail
    assert JOB_KIND.untracked_problem("trainer", live, {"other-1"}) is None
