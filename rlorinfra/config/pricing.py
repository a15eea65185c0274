"""``[pricing]`` and ``[policy]``: checked into a ``PriceTable`` and a ``CostPolicy``.

``[pricing]`` holds ``source = "..."`` (required as soon as one price is given:
it is shown beside every figure) and ``ACCELERATOR_TYPE = USD per
accelerator-hour``. ``--pricing FILE`` reads the same table from a TOML file of
its own (a team's shared rate card), either bare or under a ``[pricing]``
header; its problems name that file and line. Nothing here is a built-in
price: the table is the user's (docs/configuration.md, "Pricing").
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from rlorinfra.config import fields as F
from rlorinfra.config.diagnostics import ERROR, Collector
from rlorinfra.errors import ConfigError
from rlorinfra.model.pricing import CostPolicy, PriceTable

SOURCE_KEY = "source"
POLICY_KEYS = ("max_hourly_delta",)


def check_pricing(value: Any, c: Collector, *, prefix: tuple[str, ...] = ("pricing",)) -> PriceTable:
    """The ``[pricing]`` table at ``prefix`` (missing = no prices: every figure unknown)."""
    table = _table(value, "pricing", c)
    prices: dict[str, float] = {}
    for key, raw in table.items():
        if key == SOURCE_KEY:
            continue
        kind = _accelerator(key, c, where=(*prefix, key))
        price = _price(raw, key, c, where=(*prefix, key))
        if kind is not None and price is not None:
            prices[kind] = price
    source = _source(table.get(SOURCE_KEY), bool(table.keys() - {SOURCE_KEY}), c, prefix)
    return PriceTable(source=source, prices=prices)


def check_policy(value: Any, c: Collector) -> CostPolicy:
    """The ``[policy]`` table: ``max_hourly_delta`` (USD per hour, ≥ 0, finite)."""
    table = _table(value, "policy", c)
    for key in table:
        if key not in POLICY_KEYS:
            hint = F.suggestion(key, POLICY_KEYS) or f"Known keys in [policy]: {', '.join(POLICY_KEYS)}."
            c.error(f"unknown key {F.show(key)} in [policy]", hint, key=f"policy.{key}", where=("policy", key))
    raw = table.get("max_hourly_delta")
    if raw is None:
        return CostPolicy()
    if isinstance(raw, bool) or not isinstance(raw, int | float) or not math.isfinite(raw) or raw < 0:
        c.error(f"policy.max_hourly_delta must be a finite number of USD per hour >= 0, {F.got(raw)}",
                "For example: max_hourly_delta = 40.0", key="policy.max_hourly_delta",
                where=("policy", "max_hourly_delta"))  # fmt: skip
        return CostPolicy()
    return CostPolicy(max_hourly_delta=float(raw))


def load_pricing_file(path: Path) -> PriceTable:
    """``--pricing FILE``: the table from a TOML file; ``ConfigError`` naming file and line."""
    import tomllib

    path = Path(path)
    try:
        text = path.read_bytes().decode("utf-8").removeprefix("\ufeff")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise ConfigError(
            f"Cannot read the pricing file {path}: {reason or exc}",
            "Pass a TOML file of `ACCELERATOR_TYPE = USD per hour` lines and a `source`.",
        ) from None
    c = Collector(file=str(path), text=text)
    try:
        doc = tomllib.loads(text)
    except ValueError as exc:
        c.error(f"not valid TOML: {exc}", "Fix the TOML syntax.")
        doc = {}
    nested = isinstance(doc.get("pricing"), dict) and len(doc) == 1
    table = check_pricing(doc["pricing"] if nested else doc, c, prefix=("pricing",) if nested else ())
    if not c.has_errors and not table.prices:
        c.error("no price in the pricing file", "Add lines such as NVIDIA_H100_80GB = 8.0 and a source.")
    if c.has_errors:
        problems = tuple(d.message() for d in c.diagnostics() if d.severity == ERROR)
        noun = "problem" if len(problems) == 1 else "problems"
        raise ConfigError(
            f"Invalid pricing file: {len(problems)} {noun} in {path}",
            "\n".join(problems) + '\n\nFix them (the file holds `source = "..."` and '
            "`ACCELERATOR_TYPE = USD per accelerator-hour` lines) and run the command again.",
            problems=problems,
        )
    return table


def _table(value: Any, name: str, c: Collector) -> dict[str, Any]:
    if value is None:
        return {}
    if isinstance(value, dict):
        return value
    c.error(f"{name} must be a table, {F.got(value)}", f"Write it as a [{name}] section.", key=name, where=(name,))
    return {}


def _accelerator(key: str, c: Collector, *, where: tuple[str, ...]) -> str | None:
    """A price's key: one of the API's accelerator types (with a "did you mean")."""
    try:
        return F.accelerator_type(key) or None
    except F.Invalid as exc:
        c.error(f"pricing key {F.show(key)} {exc.summary}", exc.hint, key=f"pricing.{key}", where=where)
        return None


def _price(raw: Any, key: str, c: Collector, *, where: tuple[str, ...]) -> float | None:
    """USD per accelerator-hour: a finite number > 0 (a free accelerator is no price to write)."""
    if isinstance(raw, bool) or not isinstance(raw, int | float) or not math.isfinite(raw) or raw <= 0:
        c.error(f"pricing.{key} must be a finite number of USD per accelerator-hour > 0, {F.got(raw)}",
                f"For example: {key} = 8.0 (leave the type out when it has no price: it then shows as unknown).",
                key=f"pricing.{key}", where=where)  # fmt: skip
        return None
    return float(raw)


def _source(raw: Any, has_prices: bool, c: Collector, prefix: tuple[str, ...]) -> str:
    """``source``: required once a price is given, since every figure names it."""
    where = (*prefix, SOURCE_KEY)
    if raw is None:
        if has_prices:
            c.error("pricing.source is required when prices are given",
                    'Say where the prices come from, e.g. source = "team rate card, 2026-11": every cost '
                    "figure is shown with it.", key="pricing.source", where=prefix or where)  # fmt: skip
        return ""
    if not isinstance(raw, str) or not raw.strip():
        c.error(f"pricing.source must be a non-empty string, {F.got(raw)}",
                'For example: source = "fireworks.ai/pricing, 2026-12-01".',
                key="pricing.source", where=where)  # fmt: skip
        return ""
    return raw.strip()
