"""The plan text with cost lines (golden), and format-1 plan documents still loading and rendering."""

from __future__ import annotations

import copy

from rlorinfra.model.address import Kind
from rlorinfra.model.pricing import PriceTable
from rlorinfra.plan.cost import plan_cost
from rlorinfra.plan.document import COST_KEYS, plan_document, plan_from_document
from rlorinfra.plan.planner import make_plan
from rlorinfra.render.text import change_cost_text, render_plan_text
from tests.plan.planworld import A100, H100, MODEL, declared, desired, live_job, record, state, world
from tests.plan.test_cost import _deployment
from tests.render.renderplans import CONTROL_PLANE
from tests.render.test_render_text import check_golden

PRICES = PriceTable("team rate card, 2026-11", {H100: 2.5, "NVIDIA_H200_141GB": 4.0})


def _priced(prices: PriceTable = PRICES) -> dict:
    """A plan creating a priced job and a deployment (1..3 replicas), deleting an unpriced A100 job."""
    old = record({"base_model": MODEL, "accelerator_type": A100, "accelerator_count": 8, "node_count": 1}, "old-1")
    base = state(old=old)
    live = world(live_job("old-1", "old"))
    plan = make_plan(
        desired(declared("policy")), base, live, desired_by_kind={Kind.DEPLOYMENT: {"rollout": _deployment(1, 3)}}
    )
    return plan_document(plan, control_plane=CONTROL_PLANE, cost=plan_cost(plan, base, live, prices))


def test_golden_plan_with_cost_lines():
    check_golden("priced", render_plan_text(_priced()))


def test_golden_plan_with_every_price_known():
    prices = PriceTable("fireworks.ai/pricing, 2026-12", {**PRICES.prices, A100: 2.0})
    check_golden("priced_known", render_plan_text(_priced(prices)))


def test_cost_lines_per_change():
    doc = _priced()
    by_address = {c["address"]: c for c in doc["changes"]}
    assert change_cost_text(by_address["job.policy"]) == "+8 × NVIDIA_H100_80GB (+$20.00/h)"
    assert (
        change_cost_text(by_address["deployment.rollout"])
        == "+1 × NVIDIA_H200_141GB (+$4.00/h, up to +$12.00/h at max replicas)"
    )
    assert (
        change_cost_text(by_address["job.old"]) == "-8 × NVIDIA_A100_80GB (unknown $/h: no price for NVIDIA_A100_80GB)"
    )
    assert doc["summary"]["hourly_cost_delta"] is None and doc["summary"]["hourly_cost_after"] == 24.0
    assert doc["summary"]["hourly_cost_unknown"] == "no price for NVIDIA_A100_80GB"


def test_without_a_price_table_no_cost_line_is_shown():
    text = render_plan_text(_priced(PriceTable()))
    assert "$" not in text and "Cost" not in text


def _format_1(doc: dict) -> dict:
    """The document as rlorinfra wrote it before cost (format 1)."""
    old = copy.deepcopy(doc)
    old["format_version"] = 1
    old.pop("pricing_source")
    for entry in [*old["changes"], old["summary"]]:
        for key in COST_KEYS:
            entry.pop(key)
    old["summary"].pop("hourly_cost_after")
    return old


def test_format_1_documents_still_load_and_render_without_cost():
    doc = _priced()
    old = _format_1(doc)
    assert plan_from_document(old) == plan_from_document(doc)
    text = render_plan_text(old)
    assert "will be created" in text and "Cost" not in text and "$" not in text
