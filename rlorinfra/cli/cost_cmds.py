"""``rlorinfra cost`` and the cost options of plan and apply (``--pricing FILE``, ``--max-hourly-delta USD``).

The two options override the config's ``[pricing]`` and ``[policy]`` for one
run. They are stored on the click context (not passed as parameters) so that
``open_workspace`` applies them to the config every command builds, and the
commands that take them need no new arguments.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from rlorinfra.cli.common import file_option, json_option
from rlorinfra.cli.exit_codes import ExitCode
from rlorinfra.cli.runtime import insecure_option, open_workspace

if TYPE_CHECKING:
    from rlorinfra.config.model import Config
    from rlorinfra.model.pricing import HourlyCost
    from rlorinfra.operations.costing import ResourceSpend, SpendReport

_PRICING_KEY = "rlorinfra.pricing_file"
_LIMIT_KEY = "rlorinfra.max_hourly_delta"


def _remember(key: str) -> Callable[[click.Context, click.Parameter, Any], None]:
    def callback(ctx: click.Context, _param: click.Parameter, value: Any) -> None:
        if value is not None:
            ctx.meta[key] = value

    return callback


def _usd(ctx: click.Context | None, param: click.Parameter | None, value: str | None) -> float | None:
    """``--max-hourly-delta``: a finite number of USD ≥ 0 (``$40`` and ``40.0`` both read)."""
    if value is None:
        return None
    try:
        number = float(value.strip().lstrip("$").replace(",", ""))
    except ValueError:
        raise click.BadParameter(f"{value!r} is not an amount of USD per hour, such as 40 or 12.50.") from None
    if not math.isfinite(number) or number < 0:
        raise click.BadParameter(f"{value!r} must be a finite amount of USD per hour >= 0.")
    if ctx is not None:
        ctx.meta[_LIMIT_KEY] = number
    return number


def pricing_option(func: Callable[..., Any]) -> Callable[..., Any]:
    """``--pricing FILE``: the ``[pricing]`` table for this run, from a TOML file (a team's rate card)."""
    return click.option(
        "--pricing",
        metavar="FILE",
        type=click.Path(path_type=Path, dir_okay=False),
        expose_value=False,
        callback=_remember(_PRICING_KEY),
        help="Take the [pricing] table (USD per accelerator-hour and its source) from this TOML file.",
    )(func)


def cost_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """``--pricing FILE`` and ``--max-hourly-delta USD`` (plan and apply): they override the config's tables."""
    func = click.option(
        "--max-hourly-delta",
        metavar="USD",
        expose_value=False,
        callback=_usd,
        help="Fail the plan, before any change, if it adds more than this many USD per hour "
        "(overrides [policy] max_hourly_delta).",
    )(func)
    return pricing_option(func)


def with_cost_overrides(config: Config) -> Config:
    """The config with this run's ``--pricing`` and ``--max-hourly-delta`` in force (unchanged without them)."""
    from rlorinfra.config.pricing import load_pricing_file
    from rlorinfra.model.pricing import CostPolicy

    ctx = click.get_current_context(silent=True)
    meta = ctx.meta if ctx is not None else {}
    if _PRICING_KEY in meta:
        config = replace(config, pricing=load_pricing_file(meta[_PRICING_KEY]))
    if _LIMIT_KEY in meta:
        config = replace(config, policy=CostPolicy(max_hourly_delta=meta[_LIMIT_KEY]))
    return config


@click.command("cost")
@file_option
@pricing_option
@json_option
@insecure_option
def cost_cmd(config_path: Path, as_json: bool, insecure: bool) -> ExitCode:
    """Show what each managed resource costs now, has spent, and will have spent at its TTL.

    Per resource: accelerators held, $/h now (0 when it holds none), accelerator-hours
    and spend to date (the live acceleratorSeconds × [pricing]), and the spend projected
    to its TTL. Deployments do not report usage: their spend is unknown. Read-only: takes
    no lock and changes nothing.

    \b
    Examples:
      rlorinfra cost
      rlorinfra cost --json --pricing team-rates.toml
    """
    from rlorinfra.operations.costing import run_cost, spend_document

    ws = open_workspace(config_path, insecure, show_warnings=False)
    try:
        report = run_cost(ws)
    finally:
        ws.close()
    if as_json:
        click.echo(json.dumps(spend_document(report), indent=2, sort_keys=True))
    else:
        click.echo(render_spend_text(report))
    return ExitCode.OK


# --- text view --------------------------------------------------------------------------------

_HEADERS = ("ADDRESS", "ACCELERATORS", "$/H NOW", "ACCEL-HOURS", "SPEND TO DATE", "AT TTL")


def render_spend_text(report: SpendReport) -> str:
    """A table, one row per managed resource, then the totals and the price source."""
    if not report.resources:
        return "No managed resources: nothing costs anything. Run `rlorinfra apply` first."
    rows = [_cells(r) for r in report.resources]
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(_HEADERS)]
    table = (_HEADERS, *rows)
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in table]
    source = report.source or "none: add a [pricing] table or pass --pricing FILE"
    total = f"Total: {_money(report.hourly_now)}/h now, {_money(report.spend_to_date)} spent to date."
    return "\n".join([*lines, "", total, f"Prices (USD per accelerator-hour): {source}"])


def _cells(row: ResourceSpend) -> tuple[str, ...]:
    from rlorinfra.render.text import accelerator_text

    held = accelerator_text(dict(row.accelerators)).replace("+", "") or "none"
    hours = "not reported" if row.accelerator_hours is None else f"{row.accelerator_hours:,.3f}"
    spend = _money(row.spend_to_date) if row.accelerator_seconds is not None else "unknown (not reported)"
    at_ttl = "no ttl" if row.expires_at is None or row.projected is None else _money(row.projected)
    return (str(row.address), held, _money(row.hourly_now), hours, spend, at_ttl)


def _money(cost: HourlyCost) -> str:
    from rlorinfra.model.pricing import usd_text
    from rlorinfra.plan.cost import unknown_reason

    return usd_text(cost.usd) if cost.usd is not None else f"unknown ({unknown_reason(cost)})"
