"""``rlorinfra plan``: refresh, show drift, show the plan; never changes anything remote."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from rlorinfra.cli.common import (
    complete_job_names,
    file_option,
    get_globals,
    json_option,
    lock_timeout_option,
)
from rlorinfra.cli.exit_codes import ExitCode
from rlorinfra.cli.runtime import insecure_option, open_workspace
from rlorinfra.cli.ui import ClickUI, PlanFormat


def plan_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """Options shared by plan and apply for building a plan (the cost options included)."""
    from rlorinfra.cli.cost_cmds import cost_options

    func = cost_options(func)
    func = click.option(
        "--replace",
        "replace_names",
        multiple=True,
        metavar="NAME",
        shell_complete=complete_job_names,
        help="Force replacement of this job (repeatable).",
    )(func)
    func = click.option(
        "--target",
        "targets",
        multiple=True,
        metavar="NAME",
        shell_complete=complete_job_names,
        help="Only plan this job (repeatable).",
    )(func)
    func = click.option(
        "--refresh/--no-refresh",
        default=True,
        show_default=True,
        help="Read the live world first (--no-refresh trusts the state file).",
    )(func)
    func = click.option(
        "--health-check/--no-health-check",
        "health_check",
        default=True,
        show_default=True,
        help="Health-check running trainers while refreshing (an unhealthy one is waited for).",
    )(func)
    return func


TARGETING_APPLY = (
    "Applied changes may be incomplete\n\n"
    "The plan was created with the --target option in effect, so some changes requested in the "
    "configuration may have been ignored. Run the following command to verify that no other changes "
    "are pending:\n    rlorinfra plan"
)


@click.command("plan")
@file_option
@plan_options
@click.option(
    "--out",
    "out",
    type=click.Path(path_type=Path, dir_okay=False),
    metavar="PLANFILE",
    help="Save the plan for `rlorinfra apply PLANFILE`.",
)
@click.option("--detailed-exitcode", is_flag=True, help="Exit 0 with no changes, 1 on error, 2 when there are changes.")
@click.option("--refresh-only", is_flag=True, help="Only show drift (with --detailed-exitcode: 2 on drift).")
@click.option("--destroy", is_flag=True, help="Plan the deletion of every managed job.")
@json_option
@lock_timeout_option
@insecure_option
def plan_cmd(
    config_path: Path,
    refresh: bool,
    health_check: bool,
    targets: tuple[str, ...],
    replace_names: tuple[str, ...],
    out: Path | None,
    detailed_exitcode: bool,
    refresh_only: bool,
    destroy: bool,
    as_json: bool,
    lock_timeout: float,
    insecure: bool,
) -> ExitCode:
    """Show how the live jobs differ from the configuration.

    \b
    Examples:
      rlorinfra plan
      rlorinfra plan --detailed-exitcode --json   # CI drift check
      rlorinfra plan --out release.plan && rlorinfra apply release.plan
    """
    from rlorinfra.operations import PlanRequest, has_pending_changes, run_plan

    ws = open_workspace(config_path, insecure)
    request = PlanRequest(
        refresh=refresh,
        destroy=destroy,
        refresh_only=refresh_only,
        targets=targets,
        replace=replace_names,
        health_check=health_check,
    )
    ui = ClickUI(plan_format=_plan_format(as_json, refresh_only), color=get_globals().color)
    try:
        outcome = run_plan(ws, request, ui, lock_timeout=lock_timeout, out=out)
    finally:
        ws.close()
    if out and not as_json:
        click.echo(f"\nSaved the plan to: {out}\nTo perform exactly these actions, run:\n  rlorinfra apply {out}")
    if detailed_exitcode and has_pending_changes(outcome):
        return ExitCode.CHANGES
    return ExitCode.OK


def _plan_format(as_json: bool, refresh_only: bool) -> PlanFormat:
    if as_json:
        return PlanFormat.JSON
    return PlanFormat.DRIFT_TEXT if refresh_only else PlanFormat.TEXT
