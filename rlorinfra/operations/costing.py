"""``rlorinfra cost``: what each managed resource costs now, has spent, and will spend until its TTL.

Read-only and lock-free (like ``output``): it reads the state, GETs each
managed resource and prices what it holds with the user's ``PriceTable``.
Spend to date is the live ``acceleratorSeconds`` × price (PROTOCOL.md §3.5:
the only usage field of a trainer job). Deployments report no usage, so their
spend is unknown; their $/h now is the live replica count × accelerators per
replica. A resource whose record has an ``expires_at`` (its TTL) gets the spend
projected to then at today's $/h; one without reads "no ttl".
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from rlorinfra.model.address import Address, Kind
from rlorinfra.model.deployments import BAD_STATES, LiveDeployment
from rlorinfra.model.jobs import LiveJob, ShapeVersion
from rlorinfra.model.pricing import UNKNOWN_ACCELERATORS, ZERO, HourlyCost, PriceTable, add, hourly_cost
from rlorinfra.model.states import RELEASED_STATES
from rlorinfra.operations.planning import check_state_owner
from rlorinfra.operations.workspace import Workspace
from rlorinfra.state.model import DeploymentRecord, JobRecord, State

SECONDS_PER_HOUR = 3600.0


@dataclass(frozen=True)
class ResourceSpend:
    """One managed resource: what it holds and costs now, has used, and will have spent at its TTL.

    ``accelerator_seconds`` is None when the control plane does not report usage
    (deployments) or the resource is gone; ``expires_at`` None means no TTL.
    """

    address: Address
    resource_id: str
    live_state: str | None
    accelerators: Mapping[str, int]
    hourly_now: HourlyCost
    accelerator_seconds: Mapping[str, int] | None
    spend_to_date: HourlyCost  # USD (an HourlyCost figure reused: a sum that may be unknown)
    expires_at: datetime | None = None
    projected: HourlyCost | None = None  # USD at expires_at; None: no ttl

    @property
    def accelerator_hours(self) -> float | None:
        """Accelerator-hours used to date (None: not reported)."""
        if self.accelerator_seconds is None:
            return None
        return sum(self.accelerator_seconds.values()) / SECONDS_PER_HOUR


@dataclass(frozen=True)
class SpendReport:
    """Every managed resource's spend, the totals and the price source (``cost --json``)."""

    source: str
    resources: tuple[ResourceSpend, ...]
    now: datetime

    @property
    def hourly_now(self) -> HourlyCost:
        """$/h of everything managed, now."""
        return add(ZERO, *(r.hourly_now for r in self.resources))

    @property
    def spend_to_date(self) -> HourlyCost:
        """USD spent to date by everything managed (unknown once one resource's is)."""
        return add(ZERO, *(r.spend_to_date for r in self.resources))


def run_cost(ws: Workspace, now: datetime | None = None) -> SpendReport:
    """Read the state (no lock) and the live resources; price them. Changes nothing."""
    from rlorinfra.plan.refresh import resolve_shapes

    now = now or datetime.now(UTC)
    state = ws.store.read()
    check_state_owner(ws, state)
    client = ws.client()
    shapes = resolve_shapes(client, {}, state) if state.jobs else {}
    prices = ws.config.pricing
    rows = [job_spend(name, rec, client.get_job(rec.job_id), shapes, prices, now) for name, rec in _jobs(state)]
    rows += [
        deployment_spend(name, rec, client.get_deployment(rec.deployment_id), shapes, prices, now)
        for name, rec in sorted(state.deployments.items())
    ]
    return SpendReport(source=prices.source, resources=tuple(rows), now=now)


def _jobs(state: State) -> list[tuple[str, JobRecord]]:
    return sorted(state.jobs.items())


def job_spend(
    name: str,
    record: JobRecord,
    live: LiveJob | None,
    shapes: Mapping[str, ShapeVersion],
    prices: PriceTable,
    now: datetime,
) -> ResourceSpend:
    """A trainer job: holds its shape's accelerators unless released; usage from ``acceleratorSeconds``."""
    from rlorinfra.plan.kinds.job import accelerators_for

    state = live.state if live is not None else None
    held = accelerators_for(record.spec, shapes) if state is not None and state not in RELEASED_STATES else {}
    unknown = state is not None and state not in RELEASED_STATES and not held
    hourly = UNKNOWN_ACCELERATORS if unknown else hourly_cost(held, prices)
    seconds = dict(live.accelerator_seconds) if live is not None else None
    # Gone (404): its usage can no longer be read, so its spend is unknown rather than $0.
    spend = hourly_cost(seconds, _per_second(prices)) if seconds is not None else HourlyCost(None)
    return _with_ttl(ResourceSpend(Address.job(name), record.job_id, state, held, hourly, seconds, spend), record, now)


def deployment_spend(
    name: str,
    record: DeploymentRecord,
    live: LiveDeployment | None,
    shapes: Mapping[str, ShapeVersion],
    prices: PriceTable,
    now: datetime,
) -> ResourceSpend:
    """A deployment: replicas × per replica now; its usage is not reported by the API (unknown)."""
    from rlorinfra.plan.kinds.deployment import per_replica

    state = str(live.state) if live is not None else None
    replicas = _replicas(record, live)
    unit = per_replica(record.spec, shapes)
    held = {k: v * replicas for k, v in unit.items() if v * replicas}
    hourly = UNKNOWN_ACCELERATORS if replicas and not unit else hourly_cost(held, prices)
    address = Address(Kind.DEPLOYMENT, name)
    spend = HourlyCost(None)  # no usage field on a deployment (PROTOCOL.md §10): unknown, never $0
    return _with_ttl(ResourceSpend(address, record.deployment_id, state, held, hourly, None, spend), record, now)


def _replicas(record: DeploymentRecord, live: LiveDeployment | None) -> int:
    """Live replica count when reported, else the floor the spec asks for; 0 when gone or failed."""
    if live is None or live.state in BAD_STATES:
        return 0
    if live.replica_count is not None:
        return live.replica_count
    return int(record.spec.get("min_replica_count") or 0)


def _per_second(prices: PriceTable) -> PriceTable:
    """The table in USD per accelerator-second (acceleratorSeconds are seconds)."""
    return PriceTable(prices.source, {k: v / SECONDS_PER_HOUR for k, v in prices.prices.items()})


def _with_ttl(row: ResourceSpend, record: JobRecord | DeploymentRecord, now: datetime) -> ResourceSpend:
    """Add the spend projected to ``expires_at`` (when the record has one) at today's $/h."""
    expires = parse_instant(getattr(record, "expires_at", None))
    if expires is None:
        return row
    hours_left = max(0.0, (expires - now).total_seconds() / SECONDS_PER_HOUR)
    later = HourlyCost(row.hourly_now.usd * hours_left) if row.hourly_now.usd is not None else row.hourly_now
    projected = add(row.spend_to_date, later) if row.spend_to_date.known else row.spend_to_date
    return ResourceSpend(**{**row.__dict__, "expires_at": expires, "projected": projected})


def parse_instant(value: Any) -> datetime | None:
    """An ``expires_at`` as state may record it: RFC 3339 text, epoch seconds, or a datetime."""
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, int | float) and not isinstance(value, bool):
        return datetime.fromtimestamp(float(value), UTC)
    try:
        parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def spend_document(report: SpendReport) -> dict[str, Any]:
    """The ``cost --json`` document: figures in USD, null when unknown."""
    return {
        "format_version": 1,
        "pricing_source": report.source or None,
        "now": report.now.isoformat(timespec="seconds"),
        "resources": [_row(r) for r in report.resources],
        "summary": {"hourly_cost": report.hourly_now.usd, "spend_to_date": report.spend_to_date.usd},
    }


def _row(row: ResourceSpend) -> dict[str, Any]:
    return {
        "address": str(row.address),
        "id": row.resource_id,
        "live_state": row.live_state,
        "accelerators": dict(sorted(row.accelerators.items())),
        "hourly_cost": row.hourly_now.usd,
        "accelerator_seconds": (
            dict(sorted(row.accelerator_seconds.items())) if row.accelerator_seconds is not None else None
        ),
        "accelerator_hours": row.accelerator_hours,
        "spend_to_date": row.spend_to_date.usd,
        "expires_at": row.expires_at.isoformat(timespec="seconds") if row.expires_at else None,
        "projected_spend": row.projected.usd if row.projected else None,
    }
