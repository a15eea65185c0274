"""`rlorinfra cost` arithmetic: $/h now, spend to date from acceleratorSeconds, projection to the TTL."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

import pytest

from rlorinfra.model.deployments import DeploymentState, LiveDeployment
from rlorinfra.model.pricing import PriceTable
from rlorinfra.operations.costing import SpendReport, deployment_spend, job_spend, parse_instant, spend_document
from rlorinfra.state.model import JobRecord
from tests.plan.planworld import H100, SHAPES, declared, live_job, record
from tests.plan.test_cost import _deployment, _deployment_record

NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
PRICES = PriceTable("card", {H100: 3.6, "NVIDIA_H200_141GB": 7.2})  # $0.001 and $0.002 per second


@dataclass(frozen=True)
class _TtlRecord(JobRecord):
    """A job record with the ``expires_at`` the TTL work records (absent from today's JobRecord)."""

    expires_at: str | None = None


def _running(seconds: int):
    return replace(live_job("policy-1", "policy"), accelerator_seconds=((H100, seconds),))


def test_running_job_costs_its_accelerators_and_spent_its_seconds():
    row = job_spend("policy", record(declared("policy"), "policy-1"), _running(7200), SHAPES, PRICES, NOW)
    assert dict(row.accelerators) == {H100: 8} and row.hourly_now.usd == pytest.approx(28.8)
    assert row.accelerator_hours == 2.0 and row.spend_to_date.usd == pytest.approx(7.2)
    assert row.expires_at is None and row.projected is None


def test_stopped_job_costs_nothing_now_but_keeps_its_spend():
    live = replace(_running(3600), state="JOB_STATE_CANCELLED")
    row = job_spend("policy", record(declared("policy"), "policy-1"), live, SHAPES, PRICES, NOW)
    assert row.hourly_now.usd == 0.0 and dict(row.accelerators) == {}
    assert row.spend_to_date.usd == pytest.approx(3.6)


def test_gone_job_spend_is_unknown_not_zero():
    row = job_spend("policy", record(declared("policy"), "policy-1"), None, SHAPES, PRICES, NOW)
    assert row.spend_to_date.usd is None and row.accelerator_seconds is None and row.hourly_now.usd == 0.0


def test_unpriced_accelerator_makes_figures_unknown():
    row = job_spend("policy", record(declared("policy"), "policy-1"), _running(60), SHAPES, PriceTable(), NOW)
    assert row.hourly_now.usd is None and row.spend_to_date.missing == (H100,)


def test_spend_is_projected_to_the_ttl_at_todays_rate():
    base = record(declared("policy"), "policy-1")
    ttl = _TtlRecord(**{**base.__dict__, "expires_at": (NOW + timedelta(hours=2)).isoformat()})
    row = job_spend("policy", ttl, _running(3600), SHAPES, PRICES, NOW)
    assert row.expires_at == NOW + timedelta(hours=2)
    assert row.projected is not None and row.projected.usd == pytest.approx(3.6 + 2 * 28.8)
    expired = _TtlRecord(**{**base.__dict__, "expires_at": (NOW - timedelta(hours=1)).isoformat()})
    assert job_spend("policy", expired, _running(3600), SHAPES, PRICES, NOW).projected.usd == pytest.approx(3.6)


def test_deployment_costs_its_live_replicas_and_its_spend_is_not_reported():
    spec = _deployment(1, 3)
    live = LiveDeployment("rollout", "accounts/acme/deployments/rollout", DeploymentState.READY, replica_count=2)
    row = deployment_spend("rollout", _deployment_record(spec), live, SHAPES, PRICES, NOW)
    assert dict(row.accelerators) == {"NVIDIA_H200_141GB": 2} and row.hourly_now.usd == pytest.approx(14.4)
    assert row.spend_to_date.usd is None and row.accelerator_seconds is None
    deleted = replace(live, state=DeploymentState.DELETED)
    assert deployment_spend("rollout", _deployment_record(spec), deleted, SHAPES, PRICES, NOW).hourly_now.usd == 0.0


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2026-12-06T14:00:00Z", datetime(2026, 12, 6, 14, tzinfo=UTC)),
        ("2026-12-06T14:00:00", datetime(2026, 12, 6, 14, tzinfo=UTC)),
        (1796565600, datetime.fromtimestamp(1796565600, UTC)),
        (None, None),
        ("", None),
        ("soon", None),
    ],
)
def test_parse_instant(value, expected):
    assert parse_instant(value) == expected


def test_spend_document_totals():
    rows = (
        job_spend("a", record(declared("a"), "policy-1"), _running(3600), SHAPES, PRICES, NOW),
        job_spend("b", record(declared("b"), "policy-1"), _running(7200), SHAPES, PRICES, NOW),
    )
    doc = spend_document(SpendReport("card", rows, NOW))
    assert doc["summary"]["hourly_cost"] == pytest.approx(57.6)
    assert doc["summary"]["spend_to_date"] == pytest.approx(10.8)
    assert [r["address"] for r in doc["resources"]] == ["job.a", "job.b"] and doc["pricing_source"] == "card"
