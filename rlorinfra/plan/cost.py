"""What a plan costs per hour: each change's $/h delta, the totals, and the budget gate.

Pure arithmetic over a ``Plan`` (no I/O): the accelerators each change adds or
releases (``Change.accelerators``, the floor) × the user's ``PriceTable``.
Deployments also get a ceiling: max replicas × accelerators per replica, the
figure the autoscaler may reach; the budget gate counts, per change, the larger
of floor and ceiling (``ChangeCost.worst``), and a release never counts for more
than it surely frees. A figure is
unknown (``None``) when a price is missing or the accelerators themselves are
not known (an auto-path job, an unresolved shape), never $0.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from rlorinfra.errors import PlanError
from rlorinfra.model.address import Address, Kind
from rlorinfra.model.deployments import FAILED_STATES
from rlorinfra.model.deployments import GONE_STATES as DEPLOYMENT_GONE_STATES
from rlorinfra.model.pricing import (
    UNKNOWN_ACCELERATORS,
    ZERO,
    CostPolicy,
    HourlyCost,
    PriceTable,
    add,
    hourly_cost,
    usd_text,
)
from rlorinfra.model.states import RELEASED_STATES
from rlorinfra.plan.kinds.deployment import per_replica
from rlorinfra.plan.kinds.job import accelerators_for
from rlorinfra.plan.model import Action, Change, LiveWorld, Plan
from rlorinfra.state.model import State

# Actions after which a job holds its accelerators (a NOOP does when its live job is not released).
_JOB_RUNNING_AFTER = (Action.CREATE, Action.RESUME, Action.REPLACE, Action.WAIT)
# Actions that change what a resource holds (the others only wait or do nothing).
_HOLDING_CHANGES = (Action.CREATE, Action.RESUME, Action.REPLACE, Action.UPDATE, Action.STOP, Action.DELETE)


@dataclass(frozen=True)
class ChangeCost:
    """One change's $/h delta: ``floor`` (what it surely adds) and ``ceiling`` (at max replicas).

    For a job both are the same figure; for a deployment the ceiling counts
    ``max_replica_count`` replicas where the floor counts ``min_replica_count``.
    """

    floor: HourlyCost
    ceiling: HourlyCost
    releases: bool = False  # a delete or stop: it can only give accelerators back

    @property
    def worst(self) -> HourlyCost:
        """What the budget gate counts: the larger of floor and ceiling.

        Raising ``min_replica_count`` adds its floor even when the ceiling
        (max replicas) does not move, and deleting an autoscaled deployment
        surely frees only its floor. A release whose size or price is unknown
        counts as freeing nothing: it never blocks a plan, and never pays for
        additions elsewhere.
        """
        if self.releases:
            known = [c.usd for c in (self.floor, self.ceiling) if c.usd is not None]
            return HourlyCost(min(0.0, max(known))) if known else ZERO
        if self.floor.usd is None or self.ceiling.usd is None:
            return self.floor if self.floor.usd is None else self.ceiling
        return self.floor if self.floor.usd >= self.ceiling.usd else self.ceiling


@dataclass(frozen=True)
class PlanCost:
    """The cost of a whole plan: per change (by address), the deltas, and the total after apply."""

    source: str
    changes: Mapping[Address, ChangeCost]
    delta: HourlyCost  # Σ floors
    ceiling_delta: HourlyCost  # Σ ceilings: the figure at max replicas (shown beside the delta)
    after: HourlyCost  # $/h of every managed resource the plan keeps, at its floor
    worst_delta: HourlyCost = ZERO  # Σ ChangeCost.worst: what the gate checks


def plan_cost(plan: Plan, state: State, live: LiveWorld, prices: PriceTable) -> PlanCost:
    """Price every change of ``plan`` (no-ops included: they count toward the total after apply)."""
    per_change = {change.address: change_cost(change, state, live, prices) for change in plan.changes}
    kept = [_held_after(change, state, live, prices) for change in plan.changes]
    return PlanCost(
        source=prices.source,
        changes=per_change,
        delta=add(*(c.floor for c in per_change.values())),
        ceiling_delta=add(*(c.ceiling for c in per_change.values())),
        after=add(*kept),
        worst_delta=add(*(c.worst for c in per_change.values())),
    )


def change_cost(change: Change, state: State, live: LiveWorld, prices: PriceTable) -> ChangeCost:
    """The $/h delta of one change (floor and ceiling)."""
    if change.action not in _HOLDING_CHANGES and not change.accelerators:
        return ChangeCost(ZERO, ZERO)  # a wait or no-op holds what it held (a wait that resumes counts)
    releases = change.action in (Action.DELETE, Action.STOP)
    if _accelerators_unknown(change, state, live):
        return ChangeCost(UNKNOWN_ACCELERATORS, UNKNOWN_ACCELERATORS, releases)
    floor = hourly_cost(change.accelerators, prices)
    if change.kind is not Kind.DEPLOYMENT:
        return ChangeCost(floor, floor, releases)
    return ChangeCost(floor, hourly_cost(_deployment_ceiling(change, live), prices), releases)


def _spec(change: Change, state: State) -> Mapping[str, Any] | None:
    """The spec that says what the resource holds: after, before, or its state record's."""
    if change.after is not None:
        return change.after
    if change.before is not None:
        return change.before
    record = state.record(change.address)
    return record.spec if record is not None else None


def _unit(kind: Kind, spec: Mapping[str, Any], live: LiveWorld) -> dict[str, int]:
    """Accelerators of one running job, or of one deployment replica (``{}``: unknown)."""
    return per_replica(spec, live.shapes) if kind is Kind.DEPLOYMENT else accelerators_for(spec, live.shapes)


def _accelerators_unknown(change: Change, state: State, live: LiveWorld) -> bool:
    """True when a change moves accelerators whose count rlorinfra cannot know."""
    if change.accelerators:
        return False
    specs: list[Mapping[str, Any]] = [s for s in (change.after, change.before) if s is not None]
    specs = specs or [_spec(change, state) or {}]
    if change.kind is Kind.DEPLOYMENT and all(not int(s.get("max_replica_count", 1) or 0) for s in specs):
        return False  # no replica, ever: holds nothing whatever the shape
    return any(not _unit(change.kind, spec, live) for spec in specs)


def _deployment_ceiling(change: Change, live: LiveWorld) -> dict[str, int]:
    """max replicas × per replica after, minus what it could hold before (nothing when gone or failed)."""
    out: dict[str, int] = {}
    holding_before = change.live_state not in DEPLOYMENT_GONE_STATES | FAILED_STATES
    sides = [(change.after, 1)]
    if change.action is not Action.CREATE and holding_before:
        sides.append((change.before, -1))
    for spec, sign in sides:
        if spec is None:
            continue
        replicas = int(spec.get("max_replica_count", 1) or 0)
        for kind, count in per_replica(spec, live.shapes).items():
            out[kind] = out.get(kind, 0) + sign * count * replicas
    return {k: v for k, v in sorted(out.items()) if v}


def _held_after(change: Change, state: State, live: LiveWorld, prices: PriceTable) -> HourlyCost:
    """$/h the resource holds once the plan is applied (its floor; 0 when deleted or stopped)."""
    if change.action in (Action.DELETE, Action.STOP):
        return ZERO
    spec = _spec(change, state)
    if spec is None:
        return ZERO
    if change.kind is Kind.DEPLOYMENT:
        replicas = int(spec.get("min_replica_count") or 0)
        if not replicas:
            return ZERO
        unit = per_replica(spec, live.shapes)
        return hourly_cost({k: v * replicas for k, v in unit.items()}, prices) if unit else UNKNOWN_ACCELERATORS
    if change.action not in _JOB_RUNNING_AFTER and change.live_state in RELEASED_STATES:
        return ZERO
    held = accelerators_for(spec, live.shapes)
    return hourly_cost(held, prices) if held else UNKNOWN_ACCELERATORS


# --- the budget gate ------------------------------------------------------------------------


def check_budget(cost: PlanCost, policy: CostPolicy) -> None:
    """Raise ``PlanError`` when the plan's worst-case increase is above the limit, or unknown.

    Runs before any change is made (plan, apply, and apply of a saved plan with
    the current prices and policy). Names the biggest contributors by address.
    """
    limit = policy.max_hourly_delta
    if limit is None:
        return
    worst = cost.worst_delta
    if worst.usd is not None and worst.usd <= limit + 1e-9:
        return
    shown = usd_text(limit)
    if worst.usd is None:
        summary = f"The plan's cost increase is unknown, and the max_hourly_delta limit is {shown}/h"
    else:
        summary = f"The plan adds {usd_text(worst.usd, signed=True)}/h, above the max_hourly_delta limit of {shown}/h"
    raise PlanError(summary, _budget_detail(cost, limit))


def _budget_detail(cost: PlanCost, limit: float) -> str:
    contributors = biggest_contributors(cost)
    lines = [f"  {address}: {text}" for address, text in contributors[:5]]
    more = len(contributors) - 5
    if more > 0:
        lines.append(f"  … and {more} more")
    source = f" (prices: {cost.source})" if cost.source else ""
    return (
        f"Biggest contributors{source}:\n" + "\n".join(lines) + "\n"
        "Nothing was changed. Add the missing prices to [pricing] (or --pricing FILE), make the plan smaller "
        "(--target), or raise the limit ([policy] max_hourly_delta, or --max-hourly-delta USD for this run)."
    )


def biggest_contributors(cost: PlanCost) -> list[tuple[str, str]]:
    """``(address, "+$16.00/h")`` for every change that adds cost: unknown first, then by $/h descending."""
    rows: list[tuple[bool, float, str, str]] = []
    for address, change in cost.changes.items():
        worst = change.worst
        if worst.usd is None:
            rows.append((False, 0.0, str(address), f"unknown $/h ({unknown_reason(worst)})"))
        elif worst.usd > 0:
            rows.append((True, -worst.usd, str(address), f"{usd_text(worst.usd, signed=True)}/h"))
    return [(address, text) for _, _, address, text in sorted(rows)]


def unknown_reason(cost: HourlyCost) -> str:
    """Why a figure is unknown: ``no price for NVIDIA_H200_141GB`` or ``accelerators unknown``."""
    if cost.missing:
        return "no price for " + ", ".join(cost.missing)
    return "accelerators unknown"
