"""Cost tables: each change's $/h (known, unknown, mixed, deployments' replica ranges), the totals, the gate.

Plans come from the real planner (``make_plan``) so the accelerators priced are
the ones the kinds compute; prices are the user's table (none is built in).
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from rlorinfra.config.model import DeploymentSpec, ShapeSource
from rlorinfra.errors import PlanError
from rlorinfra.model.address import Address, Kind
from rlorinfra.model.deployments import DeploymentState, LiveDeployment
from rlorinfra.model.pricing import CostPolicy, HourlyCost, PriceTable, add, hourly_cost, usd_text
from rlorinfra.plan.cost import PlanCost, biggest_contributors, check_budget, plan_cost
from rlorinfra.plan.planner import make_plan
from rlorinfra.state.model import DeploymentRecord, State
from tests.plan.planworld import A100, H100, MODEL, declared, desired, live_job, record, state, world

H200 = "NVIDIA_H200_141GB"
PRICES = PriceTable("team rate card, 2026-11", {H100: 2.5, H200: 4.0})
POLICY = Address.job("policy")
ROLLOUT = Address(Kind.DEPLOYMENT, "rollout")


def _deployment(min_replicas: int = 1, max_replicas: int = 3, accelerator: str = H200) -> DeploymentSpec:
    """A manual-path deployment: one ``accelerator`` per replica."""
    return DeploymentSpec(
        deployment_id="rollout",
        base_model=MODEL,
        shape_source=ShapeSource.MANUAL,
        accelerator_type=accelerator,
        accept_shapeless_risk=True,
        min_replica_count=min_replicas,
        max_replica_count=max_replicas,
    )


def _deployment_record(spec: DeploymentSpec) -> DeploymentRecord:
    return DeploymentRecord(
        deployment_id="rollout",
        deployment_name="accounts/acme/deployments/rollout",
        spec=spec.spec(),
        phase="ready",
        observed_state="READY",
    )


def _serving(spec: DeploymentSpec):
    """The world with the deployment READY as declared by ``spec`` (refresh's view)."""
    found = LiveDeployment(
        deployment_id="rollout",
        name="accounts/acme/deployments/rollout",
        state=DeploymentState.READY,
        base_model=MODEL,
        accelerator_type=spec.accelerator_type or "",
        min_replica_count=spec.min_replica_count,
        max_replica_count=spec.max_replica_count,
    )
    return replace(world(), deployments={"rollout": found})


def _cost(jobs, base: State, live, prices: PriceTable = PRICES, deployments=None) -> PlanCost:
    by_kind = {Kind.DEPLOYMENT: deployments} if deployments else None
    plan = make_plan(jobs, base, live, desired_by_kind=by_kind)
    return plan_cost(plan, base, live, prices)


# --- the arithmetic -----------------------------------------------------------------------------


def test_hourly_cost_is_unknown_when_a_type_has_no_price_never_zero():
    assert hourly_cost({H100: 8}, PRICES) == HourlyCost(20.0)
    assert hourly_cost({A100: 8}, PRICES) == HourlyCost(None, (A100,))
    assert hourly_cost({A100: 0, H100: -8}, PRICES) == HourlyCost(-20.0)  # a zero count needs no price
    assert add(HourlyCost(1.0), HourlyCost(None, (A100,))).usd is None
    assert add(HourlyCost(1.0), HourlyCost(2.5)).usd == 3.5


@pytest.mark.parametrize(
    ("usd", "signed", "text"),
    [
        (8, True, "+$8.00"),
        (-8, True, "-$8.00"),
        (0, True, "+$0.00"),
        (1234.5, False, "$1,234.50"),
        (-0.001, True, "+$0.00"),
    ],
)
def test_usd_text(usd, signed, text):
    assert usd_text(usd, signed=signed) == text


# --- the table: known, unknown, mixed ------------------------------------------------------------


def test_known_create_is_count_times_price():
    cost = _cost(desired(declared("policy")), state(), world())
    assert cost.changes[POLICY].floor == cost.changes[POLICY].ceiling == HourlyCost(20.0)  # 8 × H100 × 2.5
    assert cost.delta.usd == cost.ceiling_delta.usd == cost.after.usd == 20.0
    assert cost.source == "team rate card, 2026-11"


def test_unknown_price_makes_the_change_and_the_totals_unknown():
    cost = _cost(desired(declared("policy")), state(), world(), prices=PriceTable("card", {H200: 4.0}))
    assert cost.changes[POLICY].floor == HourlyCost(None, (H100,))
    assert cost.delta.usd is None and cost.after.usd is None and cost.delta.missing == (H100,)


def test_unknown_accelerators_are_unknown_not_free():
    # The auto path: the server picks the shape, so rlorinfra cannot count its accelerators.
    auto = declared("policy")
    auto = type(auto)(display_name="policy", base_model=MODEL)
    cost = _cost(desired(auto), state(), world())
    assert cost.changes[POLICY].floor.usd is None and cost.changes[POLICY].floor.unknown_accelerators


def test_mixed_known_create_and_unpriced_delete():
    old = record({"base_model": MODEL, "accelerator_type": A100, "accelerator_count": 8, "node_count": 1}, "old-1")
    base = state(old=old)
    cost = _cost(desired(declared("policy")), base, world(live_job("old-1", "old")))
    assert cost.changes[POLICY].floor.usd == 20.0
    assert cost.changes[Address.job("old")].floor == HourlyCost(None, (A100,))
    assert cost.delta.usd is None and cost.delta.missing == (A100,)
    assert cost.after.usd == 20.0  # the deleted job holds nothing after apply: its price is not needed
    # The gate lists what adds cost; a release whose price is unknown frees an unknown amount, adds nothing.
    assert biggest_contributors(cost) == [("job.policy", "+$20.00/h")]


def test_stop_releases_and_noop_keeps_counting_after_apply():
    running = record(declared("keep"), "keep-1")
    stopping = record(declared("stop"), "stop-1")
    live = world(live_job("keep-1", "keep"), live_job("stop-1", "stop"))
    jobs = desired(declared("keep"), declared("stop", desired_state="stopped"))
    cost = _cost(jobs, state(keep=running, stop=stopping), live)
    assert cost.changes[Address.job("stop")].floor.usd == -20.0
    assert cost.changes[Address.job("keep")].floor.usd == 0.0
    assert cost.delta.usd == -20.0 and cost.after.usd == 20.0


def test_a_stopped_job_left_stopped_costs_nothing_after_apply():
    stopped = record(declared("idle"), "idle-1", observed="JOB_STATE_CANCELLED")
    live = world(live_job("idle-1", "idle", "JOB_STATE_CANCELLED"))
    cost = _cost(desired(declared("idle", desired_state="stopped")), state(idle=stopped), live)
    assert cost.after.usd == 0.0 and cost.delta.usd == 0.0


# --- deployments: floor at min replicas, ceiling at max replicas -----------------------------------


@pytest.mark.parametrize(
    ("min_replicas", "max_replicas", "floor", "ceiling"),
    [(1, 3, 4.0, 12.0), (0, 2, 0.0, 8.0), (2, 2, 8.0, 8.0), (0, 0, 0.0, 0.0)],
)
def test_deployment_create_floor_and_ceiling(min_replicas, max_replicas, floor, ceiling):
    cost = _cost({}, state(), world(), deployments={"rollout": _deployment(min_replicas, max_replicas)})
    assert cost.changes[ROLLOUT].floor.usd == floor
    assert cost.changes[ROLLOUT].ceiling.usd == ceiling
    assert cost.ceiling_delta.usd == ceiling and cost.after.usd == floor


def test_deployment_scaled_up_in_place_costs_the_difference():
    base = state().with_record(ROLLOUT, _deployment_record(_deployment(1, 2)))
    cost = _cost({}, base, _serving(_deployment(1, 2)), deployments={"rollout": _deployment(2, 4)})
    assert (cost.changes[ROLLOUT].floor.usd, cost.changes[ROLLOUT].ceiling.usd) == (4.0, 8.0)
    assert cost.after.usd == 8.0


def test_deployment_deleted_releases_its_ceiling():
    base = state().with_record(ROLLOUT, _deployment_record(_deployment(1, 3)))
    cost = _cost({}, base, _serving(_deployment(1, 3)))
    assert (cost.changes[ROLLOUT].floor.usd, cost.changes[ROLLOUT].ceiling.usd) == (-4.0, -12.0)


def test_deployment_without_a_price_is_unknown():
    cost = _cost({}, state(), world(), prices=PriceTable("card", {H100: 1.0}), deployments={"rollout": _deployment()})
    assert cost.changes[ROLLOUT].ceiling == HourlyCost(None, (H200,))


# --- the budget gate ------------------------------------------------------------------------------


def test_gate_passes_without_a_limit_or_within_it():
    cost = _cost(desired(declared("policy")), state(), world())
    check_budget(cost, CostPolicy())
    check_budget(cost, CostPolicy(max_hourly_delta=20.0))


def test_gate_fails_above_the_limit_naming_the_biggest_contributors():
    jobs = desired(declared("policy"), declared("big", training_shape="ts-qwen3-32b-policy"))
    jobs["big"] = declared("big", training_shape="accounts/fireworks/trainingShapes/ts-qwen3-32b-policy")
    cost = _cost(jobs, state(), world())
    with pytest.raises(PlanError) as caught:
        check_budget(cost, CostPolicy(max_hourly_delta=30.0))
    err = caught.value
    assert err.summary == "The plan adds +$60.00/h, above the max_hourly_delta limit of $30.00/h"
    assert "  job.big: +$40.00/h\n  job.policy: +$20.00/h" in err.detail
    assert "prices: team rate card, 2026-11" in err.detail and "Nothing was changed" in err.detail


def test_gate_fails_when_the_increase_is_unknown():
    cost = _cost(desired(declared("policy")), state(), world(), prices=PriceTable())
    with pytest.raises(PlanError, match="cost increase is unknown") as caught:
        check_budget(cost, CostPolicy(max_hourly_delta=1000.0))
    assert "job.policy: unknown $/h (no price for NVIDIA_H100_80GB)" in caught.value.detail


def test_gate_uses_the_deployment_ceiling():
    cost = _cost({}, state(), world(), deployments={"rollout": _deployment(1, 3)})  # +$4/h, up to +$12/h
    check_budget(cost, CostPolicy(max_hourly_delta=12.0))
    with pytest.raises(PlanError, match=r"\+\$12.00/h"):
        check_budget(cost, CostPolicy(max_hourly_delta=8.0))


def test_a_plan_that_saves_money_always_passes():
    base = state(policy=record(declared("policy"), "policy-1"))
    cost = _cost({}, base, world(live_job("policy-1", "policy")))
    assert cost.delta.usd == -20.0
    check_budget(cost, CostPolicy(max_hourly_delta=0.0))


def test_a_wait_that_resumes_a_cancelling_job_is_priced():
    cancelling = record(declared("policy"), "policy-1", observed="JOB_STATE_CANCELLING")
    live = world(live_job("policy-1", "policy", "JOB_STATE_CANCELLING"))
    base = state(policy=cancelling)
    plan = make_plan(desired(declared("policy")), base, live)
    (change,) = plan.changes
    cost = plan_cost(plan, base, live, PRICES)
    assert change.accelerators == {H100: 8} and cost.changes[POLICY].floor.usd == 20.0


# --- the gate counts each change's worst case, and releases only for what they surely free ---


def test_raising_min_replicas_to_max_is_gated_by_its_floor():
    base = state().with_record(ROLLOUT, _deployment_record(_deployment(0, 8)))
    cost = _cost({}, base, _serving(_deployment(0, 8)), deployments={"rollout": _deployment(8, 8)})
    assert (cost.changes[ROLLOUT].floor.usd, cost.changes[ROLLOUT].ceiling.usd) == (32.0, 0.0)
    assert cost.worst_delta.usd == 32.0
    with pytest.raises(PlanError, match=r"adds \+\$32.00/h"):
        check_budget(cost, CostPolicy(max_hourly_delta=10.0))


def test_deleting_an_autoscaled_deployment_offsets_only_its_floor():
    base = state().with_record(ROLLOUT, _deployment_record(_deployment(1, 8)))
    cost = _cost(desired(declared("policy")), base, _serving(_deployment(1, 8)))  # -$4/h sure, +$20/h job
    assert cost.changes[ROLLOUT].worst.usd == -4.0
    assert cost.worst_delta.usd == 16.0
    with pytest.raises(PlanError, match=r"adds \+\$16.00/h"):
        check_budget(cost, CostPolicy(max_hourly_delta=10.0))


def test_a_release_with_an_unknown_price_never_blocks_the_gate():
    base = state(policy=record(declared("policy"), "policy-1"))
    cost = _cost({}, base, world(live_job("policy-1", "policy")), prices=PriceTable("card", {H200: 1.0}))
    assert cost.changes[POLICY].floor.usd is None  # H100 has no price here
    assert cost.worst_delta.usd == 0.0
    check_budget(cost, CostPolicy(max_hourly_delta=0.0))  # a destroy of unpriced GPUs is never refused
