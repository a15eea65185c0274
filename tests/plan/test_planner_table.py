"""The planner's decision table: one case per DESIGN.md §4 row and per live state.

Each case builds (desired, state, live), plans, and asserts on the single
change's values (action, job ID, reason, changed fields, accelerators) and on
the drift kinds.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from rlorinfra.plan.model import Action, Change, LiveWorld
from rlorinfra.plan.planner import make_plan
from rlorinfra.state.model import State
from tests.plan.planworld import (
    A100,
    ALL_STATES,
    H100,
    SHAPE_BIG,
    declared,
    desired,
    live_job,
    record,
    state,
    world,
)

JOB = declared("trainer")
JOB_STOPPED = declared("trainer", desired_state="stopped")
REC = record(JOB, "trainer-1")
TRACKED = state(trainer=REC)


@dataclass
class Case:
    """One row: inputs and the expected change for job "trainer"."""

    id: str
    desired: dict
    state: State
    live: LiveWorld
    action: Action
    job_id: str | None = "trainer-1"
    reason: str = ""  # substring of Change.reason
    fields: tuple[str, ...] = ()
    accelerators: dict[str, int] = field(default_factory=dict)
    drift: tuple[str, ...] = ()  # drift kinds, in order
    replace: tuple[str, ...] = ()


DESIGN_ROWS = [
    Case(
        "declared-not-in-state-creates",
        desired(JOB),
        state(),
        world(),
        Action.CREATE,
        job_id=None,
        accelerators={H100: 8},
    ),
    Case(
        "stopped-job-resumes-same-id",
        desired(JOB),
        TRACKED,
        world(live_job("trainer-1", "trainer", "JOB_STATE_FAILED", code="UNAVAILABLE", message="pod preempted")),
        Action.RESUME,
        reason="JOB_STATE_FAILED: pod preempted",
        accelerators={H100: 8},
        drift=("preempted",),
    ),
    Case(
        "gone-404-creates-new-job",
        desired(JOB),
        TRACKED,
        world(missing=("trainer-1",)),
        Action.CREATE,
        job_id=None,
        reason="deleted outside rlorinfra",
        accelerators={H100: 8},
        drift=("deleted",),
    ),
    Case(
        "tombstoned-creates-new-job",
        desired(JOB),
        TRACKED,
        world(live_job("trainer-1", "trainer", "JOB_STATE_DELETED")),
        Action.CREATE,
        job_id=None,
        reason="deleted outside rlorinfra",
        accelerators={H100: 8},
        drift=("tombstoned",),
    ),
    Case(
        "transitional-waits",
        desired(JOB),
        state(trainer=record(JOB, "trainer-1", phase="provisioning", observed="JOB_STATE_CREATING")),
        world(live_job("trainer-1", "trainer", "JOB_STATE_PENDING")),
        Action.WAIT,
        reason="JOB_STATE_PENDING",
    ),
    Case(
        "spec-differs-replaces",
        desired(declared("trainer", lora_rank=16, learning_rate=2e-5)),
        TRACKED,
        world(live_job("trainer-1", "trainer")),
        Action.REPLACE,
        fields=("learning_rate", "lora_rank"),
    ),
    Case(
        "shape-change-replaces-with-accelerator-delta",
        desired(declared("trainer", training_shape=SHAPE_BIG)),
        TRACKED,
        world(live_job("trainer-1", "trainer")),
        Action.REPLACE,
        fields=("training_shape",),
        accelerators={H100: 8},
    ),
    Case(
        "declared-stopped-running-stops",
        desired(JOB_STOPPED),
        TRACKED,
        world(live_job("trainer-1", "trainer")),
        Action.STOP,
        reason="declared stopped",
        accelerators={H100: -8},
    ),
    Case(
        "not-declared-deletes",
        {},
        TRACKED,
        world(live_job("trainer-1", "trainer")),
        Action.DELETE,
        reason="not in configuration",
        accelerators={H100: -8},
    ),
    Case(
        "replace-option-replaces",
        desired(JOB),
        TRACKED,
        world(live_job("trainer-1", "trainer")),
        Action.REPLACE,
        reason="requested with --replace",
        replace=("trainer",),
    ),
    Case("in-sync-noop", desired(JOB), TRACKED, world(live_job("trainer-1", "trainer")), Action.NOOP),
]

# Desired running, record ready and last seen RUNNING: what each live state leads to.
RUNNING_BY_STATE: dict[str, tuple[Action, str | None, dict[str, int], tuple[str, ...]]] = {
    "JOB_STATE_UNSPECIFIED": (Action.WAIT, "trainer-1", {}, ("state",)),
    "JOB_STATE_PENDING": (Action.WAIT, "trainer-1", {}, ("state",)),
    "JOB_STATE_CREATING": (Action.WAIT, "trainer-1", {}, ("state",)),
    "JOB_STATE_RUNNING": (Action.NOOP, "trainer-1", {}, ()),
    "JOB_STATE_IDLE": (Action.WAIT, "trainer-1", {}, ("idle",)),  # IDLE is never ready (the SDK's rule)
    "JOB_STATE_FAILED": (Action.RESUME, "trainer-1", {H100: 8}, ("failed",)),
    "JOB_STATE_CANCELLED": (Action.RESUME, "trainer-1", {H100: 8}, ("cancelled",)),
    "JOB_STATE_COMPLETED": (Action.RESUME, "trainer-1", {H100: 8}, ("stopped",)),
    "JOB_STATE_PAUSED": (Action.RESUME, "trainer-1", {H100: 8}, ("stopped",)),
    "JOB_STATE_CANCELLING": (Action.WAIT, "trainer-1", {H100: 8}, ("cancelled",)),  # resumed once cancelled
    "JOB_STATE_EARLY_STOPPED": (Action.REPLACE, "trainer-1", {H100: 8}, ("stopped",)),
    "JOB_STATE_EXPIRED": (Action.REPLACE, "trainer-1", {H100: 8}, ("stopped",)),
    "JOB_STATE_DELETING": (Action.CREATE, None, {H100: 8}, ("tombstoned",)),
    "JOB_STATE_DELETING_CLEANING_UP": (Action.CREATE, None, {H100: 8}, ("tombstoned",)),
    "JOB_STATE_DELETED": (Action.CREATE, None, {H100: 8}, ("tombstoned",)),
    "JOB_STATE_ARCHIVED": (Action.CREATE, None, {H100: 8}, ("tombstoned",)),
    "JOB_STATE_WRITING_RESULTS": (Action.WAIT, "trainer-1", {}, ("state",)),
    "JOB_STATE_VALIDATING": (Action.WAIT, "trainer-1", {}, ("state",)),
    "JOB_STATE_RE_QUEUEING": (Action.WAIT, "trainer-1", {}, ("state",)),
    "JOB_STATE_CREATING_INPUT_DATASET": (Action.WAIT, "trainer-1", {}, ("state",)),
}

# Desired stopped (record ready, last seen RUNNING).
STOPPED_BY_STATE: dict[str, tuple[Action, dict[str, int]]] = {
    **{
        s: (Action.STOP, {H100: -8})
        for s in (
            "JOB_STATE_UNSPECIFIED",
            "JOB_STATE_PENDING",
            "JOB_STATE_CREATING",
            "JOB_STATE_RUNNING",
            "JOB_STATE_IDLE",
            "JOB_STATE_WRITING_RESULTS",
            "JOB_STATE_VALIDATING",
            "JOB_STATE_RE_QUEUEING",
            "JOB_STATE_CREATING_INPUT_DATASET",
        )
    },
    **{
        s: (Action.NOOP, {})
        for s in (
            "JOB_STATE_FAILED",
            "JOB_STATE_CANCELLED",
            "JOB_STATE_COMPLETED",
            "JOB_STATE_PAUSED",
            "JOB_STATE_CANCELLING",
            "JOB_STATE_EARLY_STOPPED",
            "JOB_STATE_EXPIRED",
        )
    },
    # Gone: nothing to stop; the record is forgotten (a stopped job is never re-created).
    **{
        s: (Action.DELETE, {})
        for s in ("JOB_STATE_DELETING", "JOB_STATE_DELETING_CLEANING_UP", "JOB_STATE_DELETED", "JOB_STATE_ARCHIVED")
    },
}


def _state_cases() -> list[Case]:
    cases = []
    for live_state, (action, job_id, accelerators, drift) in RUNNING_BY_STATE.items():
        cases.append(
            Case(
                f"running-{live_state}",
                desired(JOB),
                TRACKED,
                world(live_job("trainer-1", "trainer", live_state)),
                action,
                job_id=job_id,
                accelerators=accelerators,
                drift=drift,
            )
        )
    for live_state, (action, accelerators) in STOPPED_BY_STATE.items():
        cases.append(
            Case(
                f"stopped-{live_state}",
                desired(JOB_STOPPED),
                TRACKED,
                world(live_job("trainer-1", "trainer", live_state)),
                action,
                accelerators=accelerators,
                drift=RUNNING_BY_STATE[live_state][3],
            )
        )
    for live_state in ALL_STATES:
        released = live_state in STOPPED_BY_STATE and STOPPED_BY_STATE[live_state][0] is not Action.STOP
        cases.append(
            Case(
                f"undeclared-{live_state}",
                {},
                TRACKED,
                world(live_job("trainer-1", "trainer", live_state)),
                Action.DELETE,
                accelerators={} if released else {H100: -8},
                drift=RUNNING_BY_STATE[live_state][3],
            )
        )
    return cases


def test_state_tables_cover_every_live_state():
    assert len(ALL_STATES) == 20
    assert sorted(RUNNING_BY_STATE) == ALL_STATES
    assert sorted(STOPPED_BY_STATE) == ALL_STATES


def _only_change(plan, name: str = "trainer") -> Change:
    [change] = [c for c in plan.changes if c.name == name]
    return change


@pytest.mark.parametrize("case", DESIGN_ROWS + _state_cases(), ids=lambda c: c.id)
def test_decision_table(case: Case):
    plan = make_plan(case.desired, case.state, case.live, replace=case.replace)
    change = _only_change(plan)
    assert change.action is case.action
    assert change.job_id == case.job_id
    assert case.reason in change.reason
    assert change.changed_fields == case.fields
    assert change.accelerators == case.accelerators
    assert tuple(d.kind for d in plan.drift) == case.drift


def test_create_carries_desired_spec_and_lifecycle_options():
    spec = declared("trainer", create_before_destroy=True, max_resumes=5)
    change = _only_change(make_plan(desired(spec), state(), world()))
    assert change.before is None
    assert change.after == spec.spec()
    assert change.create_before_destroy is True
    assert change.max_resumes == 5


def test_replace_has_before_and_after_specs():
    new = declared("trainer", lora_rank=16, create_before_destroy=True)
    change = _only_change(make_plan(desired(new), TRACKED, world(live_job("trainer-1", "trainer"))))
    assert change.before == REC.spec
    assert change.after == new.spec()
    assert change.create_before_destroy is True
    assert change.live_state == "JOB_STATE_RUNNING"


@pytest.mark.parametrize("dead", ["JOB_STATE_EARLY_STOPPED", "JOB_STATE_EXPIRED"])
def test_dead_jobs_are_replaced_with_a_reason_and_no_fields(dead):
    change = _only_change(make_plan(desired(JOB), TRACKED, world(live_job("trainer-1", "trainer", dead))))
    assert change.action is Action.REPLACE
    assert change.reason == f"job is {dead} and cannot be resumed"
    assert change.changed_fields == ()


def test_delete_of_a_gone_job_only_forgets_it():
    change = _only_change(make_plan({}, TRACKED, world(missing=("trainer-1",))))
    assert change.action is Action.DELETE
    assert change.reason == "already deleted outside rlorinfra; forget it"
    assert change.accelerators == {}


def test_declared_stopped_and_absent_is_not_created():
    change = _only_change(make_plan(desired(JOB_STOPPED), state(), world()))
    assert change.action is Action.NOOP
    assert "nothing to create" in change.reason


def test_declared_stopped_with_changed_spec_defers_the_replacement():
    spec = declared("trainer", lora_rank=16, desired_state="stopped")
    rec = record(JOB, "trainer-1", phase="stopped", observed="JOB_STATE_CANCELLED")
    plan = make_plan(desired(spec), state(trainer=rec), world(live_job("trainer-1", "trainer", "JOB_STATE_CANCELLED")))
    change = _only_change(plan)
    assert change.action is Action.NOOP
    assert change.changed_fields == ("lora_rank",)
    assert "desired_state" in change.reason
    assert not plan.has_changes


def test_stopped_on_purpose_and_now_wanted_running_resumes_without_drift():
    rec = record(JOB, "trainer-1", phase="stopped", observed="JOB_STATE_CANCELLED")
    plan = make_plan(desired(JOB), state(trainer=rec), world(live_job("trainer-1", "trainer", "JOB_STATE_CANCELLED")))
    assert _only_change(plan).action is Action.RESUME
    assert plan.drift == ()


@pytest.mark.parametrize("phase", ["provisioning", "failed", "stopped"])
def test_running_job_not_recorded_ready_is_waited_for(phase):
    rec = record(JOB, "trainer-1", phase=phase, observed="JOB_STATE_RUNNING")
    change = _only_change(make_plan(desired(JOB), state(trainer=rec), world(live_job("trainer-1", "trainer"))))
    assert change.action is Action.WAIT
    assert f"recorded phase: {phase}" in change.reason


def test_idle_is_waited_for_even_when_state_already_saw_it_idle():
    rec = record(JOB, "trainer-1", phase="provisioning", observed="JOB_STATE_IDLE")
    plan = make_plan(desired(JOB), state(trainer=rec), world(live_job("trainer-1", "trainer", "JOB_STATE_IDLE")))
    change = _only_change(plan)
    assert change.action is Action.WAIT and "IDLE" in change.reason
    assert plan.has_changes


def test_running_but_unhealthy_is_drift_and_a_wait():
    live = world(live_job("trainer-1", "trainer", healthy=False))
    plan = make_plan(desired(JOB), TRACKED, live)
    assert [d.kind for d in plan.drift] == ["unhealthy"]
    change = _only_change(plan)
    assert change.action is Action.WAIT and "health check fails" in change.reason


def test_running_and_healthy_is_ready_even_when_not_recorded_ready():
    rec = record(JOB, "trainer-1", phase="provisioning", observed="JOB_STATE_RUNNING")
    plan = make_plan(desired(JOB), state(trainer=rec), world(live_job("trainer-1", "trainer", healthy=True)))
    assert _only_change(plan).action is Action.NOOP
    assert plan.drift == ()


# --- crash mid-create: phase "creating" ----------------------------------------------------


CREATING = state(trainer=record(JOB, "trainer-1", phase="creating", observed=None))


@pytest.mark.parametrize("live", [world(missing=("trainer-1",)), world()], ids=["404", "not-listed"])
def test_interrupted_create_that_never_landed_is_retried_with_the_recorded_id(live):
    plan = make_plan(desired(JOB), CREATING, live)
    change = _only_change(plan)
    assert change.action is Action.CREATE
    assert change.job_id == "trainer-1"
    assert change.reason == "previous create did not complete; creating with recorded ID"
    assert plan.drift == ()


@pytest.mark.parametrize(
    ("live_state", "action"),
    [("JOB_STATE_RUNNING", Action.WAIT), ("JOB_STATE_CREATING", Action.WAIT), ("JOB_STATE_FAILED", Action.RESUME)],
)
def test_interrupted_create_that_landed_is_reconciled_not_created_again(live_state, action):
    plan = make_plan(desired(JOB), CREATING, world(live_job("trainer-1", "trainer", live_state)))
    change = _only_change(plan)
    assert change.action is action
    assert change.job_id == "trainer-1"
    assert "reconciled by recorded ID trainer-1" in change.reason
    assert [d.kind for d in plan.drift] == ["creating"]


def test_interrupted_create_whose_job_was_deleted_gets_a_new_id():
    change = _only_change(
        make_plan(desired(JOB), CREATING, world(live_job("trainer-1", "trainer", "JOB_STATE_DELETED")))
    )
    assert change.action is Action.CREATE
    assert change.job_id is None  # tombstoned IDs cannot be reused


def test_interrupted_create_of_an_undeclared_job_is_forgotten():
    change = _only_change(make_plan({}, CREATING, world(missing=("trainer-1",))))
    assert change.action is Action.DELETE
    assert "forget it" in change.reason


# --- accelerators ---------------------------------------------------------------------------


def _plan_one(spec, **kw) -> Change:
    return _only_change(make_plan(desired(spec), state(), world(**kw)), spec.display_name)


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"training_shape": SHAPE_BIG}, {H100: 16}),
        ({"accelerator_type": A100, "accelerator_count": 8, "node_count": 2}, {A100: 16}),
        ({"accelerator_type": A100}, {A100: 1}),
        ({"accelerator_count": 4}, {}),  # manual without a type: unknown
        ({"training_shape": None}, {}),  # auto path: the server picks
        ({"training_shape": "accounts/fireworks/trainingShapes/unknown"}, {}),
        ({"training_shape": f"{SHAPE_BIG}/versions/1"}, {H100: 16}),  # pinned version of a known shape
    ],
    ids=["shape", "manual", "manual-defaults", "manual-no-type", "auto", "unknown-shape", "pinned-shape"],
)
def test_create_accelerators(fields, expected):
    assert _plan_one(declared("x", **fields)).accelerators == expected


def test_replace_accelerators_are_after_minus_before():
    old = declared("trainer", accelerator_type=A100, accelerator_count=8)
    new = declared("trainer", training_shape=SHAPE_BIG)
    change = _only_change(
        make_plan(desired(new), state(trainer=record(old, "trainer-1")), world(live_job("trainer-1", "trainer")))
    )
    assert change.accelerators == {A100: -8, H100: 16}


def test_changes_are_sorted_by_name():
    specs = desired(declared("zeta"), declared("alpha"), declared("mid"))
    plan = make_plan(specs, state(beta=record(declared("beta"), "beta-1")), world(live_job("beta-1", "beta")))
    assert [c.name for c in plan.changes] == ["alpha", "beta", "mid", "zeta"]
    assert [c.action for c in plan.changes] == [Action.CREATE, Action.DELETE, Action.CREATE, Action.CREATE]
