"""Prices and the budget policy: USD per accelerator-hour, and the arithmetic over them.

No price is built in (DESIGN.md §7): the table is the user's, from ``[pricing]``
or ``--pricing FILE``, and its ``source`` is shown beside every figure. An
accelerator type without a price makes a figure *unknown* (``None``), never $0,
so a missing row can never pass a budget gate by accident.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class PriceTable:
    """USD per accelerator-hour by accelerator type, and where the figures come from."""

    source: str = ""
    prices: Mapping[str, float] = field(default_factory=dict)

    def price(self, accelerator_type: str) -> float | None:
        """USD per hour of one accelerator of this type (None: no price given)."""
        return self.prices.get(accelerator_type)


@dataclass(frozen=True)
class HourlyCost:
    """USD per hour of a set of accelerators; ``usd`` is None when any type has no price.

    ``missing`` names the accelerator types without a price (sorted), so a view can
    say why a figure is unknown; ``unknown_accelerators`` is True when the
    accelerators themselves are unknown (an auto-path job, an unresolved shape).
    """

    usd: float | None
    missing: tuple[str, ...] = ()
    unknown_accelerators: bool = False

    @property
    def known(self) -> bool:
        """True when the figure is a number."""
        return self.usd is not None


ZERO = HourlyCost(0.0)
UNKNOWN_ACCELERATORS = HourlyCost(None, unknown_accelerators=True)


def hourly_cost(accelerators: Mapping[str, int], prices: PriceTable) -> HourlyCost:
    """Σ count × price over ``accelerators`` (signed counts give a signed delta)."""
    missing = tuple(sorted(kind for kind, count in accelerators.items() if count and prices.price(kind) is None))
    if missing:
        return HourlyCost(None, missing)
    return HourlyCost(sum(count * (prices.price(kind) or 0.0) for kind, count in accelerators.items()))


def add(*costs: HourlyCost) -> HourlyCost:
    """The sum of several figures: unknown as soon as one is (its reasons kept)."""
    missing = tuple(sorted({kind for cost in costs for kind in cost.missing}))
    unknown = any(cost.unknown_accelerators for cost in costs)
    if missing or unknown or any(cost.usd is None for cost in costs):
        return HourlyCost(None, missing, unknown)
    return HourlyCost(sum(cost.usd or 0.0 for cost in costs))


def usd_text(usd: float, *, signed: bool = False) -> str:
    """``$8.00`` or, signed, ``+$8.00`` / ``-$8.00`` (a zero delta reads ``+$0.00``)."""
    text = f"${abs(usd):,.2f}"
    if not signed:
        return text if usd >= 0 else "-" + text
    return ("-" if usd < 0 and round(usd, 2) != 0 else "+") + text


@dataclass(frozen=True)
class CostPolicy:
    """``[policy]``: a plan adding more than ``max_hourly_delta`` USD/h fails before any change."""

    max_hourly_delta: float | None = None
