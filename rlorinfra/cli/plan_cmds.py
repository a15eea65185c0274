"""``rlorinfra plan``: refresh, show drift, show the plan; never changes anything remote."""

from __future__ import annotations

import json
from pathlib import Path

import click

from rlorinfra.cli.common import (
    complete_job_names,
    echo_warning,
    file_option,
    get_globals,
    json_option,
    lock_timeout_option,
)
from rlorinfra.cli.runtime import insecure_option, open_workspace


def plan_options(func):
    """Options shared by plan, apply and destroy for building a plan."""
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


TARGETING_PLAN = (
    "Resource targeting is in effect\n\n"
    "You are creating a plan with the --target option, which means that the result of this plan may not "
    "represent all of the changes requested by the current configuration.\n\n"
    "The --target option is not for routine use, and is provided only for exceptional situations such as "
    "recovering from errors or mistakes, or when rlorinfra specifically suggests to use it as part of an "
    "error message."
)
TARGETING_APPLY = (
    "Applied changes may be incomplete\n\n"
    "The plan was created with the --target option in effect, so some changes requested in the "
    "configuration may have been ignored. Run the following command to verify that no other changes "
    "are pending:\n    rlorinfra plan"
)


def untargeted_note(plan, targets) -> str:
    """For a targeted plan with no changes: say the rest was not looked at (or "")."""
    if not targets or plan.has_changes:
        return ""
    shown = ", ".join(f'"{t}"' for t in dict.fromkeys(targets))
    return (
        f"Only the targeted jobs ({shown}) were considered: the other resources were not, and may "
        "still have changes. Run `rlorinfra plan` without --target to see them."
    )


def render_text(document: dict, *, refresh_only: bool = False) -> str:
    """Human text for a plan document, coloured per the global settings."""
    from rlorinfra.render.text import render_drift_text, render_plan_text

    color = get_globals().color
    return render_drift_text(document, color=color) if refresh_only else render_plan_text(document, color=color)


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
    config_path,
    refresh,
    health_check,
    targets,
    replace_names,
    out,
    detailed_exitcode,
    refresh_only,
    destroy,
    as_json,
    lock_timeout,
    insecure,
):
    """Show how the live jobs differ from the configuration.

    \b
    Examples:
      rlorinfra plan
      rlorinfra plan --detailed-exitcode --json   # CI drift check
      rlorinfra plan --out release.plan && rlorinfra apply release.plan
    """
    from rlorinfra.operations import PlanRequest, build_plan, lock, save_plan

    ws = open_workspace(config_path, insecure)
    request = PlanRequest(
        refresh=refresh,
        destroy=destroy,
        refresh_only=refresh_only,
        targets=targets,
        replace=replace_names,
        health_check=health_check,
    )
    try:
        with lock(ws, "plan", lock_timeout):
            outcome = build_plan(ws, ws.store.read(), request)
            if out:
                save_plan(ws, outcome, out)
    finally:
        ws.close()
    for note in outcome.notes:
        echo_warning(note)
    if targets:
        echo_warning(TARGETING_PLAN)
    if as_json:
        click.echo(json.dumps(outcome.document, indent=None, sort_keys=False))
    else:
        click.echo(render_text(outcome.document, refresh_only=refresh_only))
        note = untargeted_note(outcome.plan, targets)
        if note:
            click.echo(note)
        if out:
            click.echo(f"\nSaved the plan to: {out}\nTo perform exactly these actions, run:\n  rlorinfra apply {out}")
    return _exit_code(outcome.plan, detailed_exitcode, refresh_only)


def _exit_code(plan, detailed: bool, refresh_only: bool) -> int:
    if not detailed:
        return 0
    pending = bool(plan.drift) if refresh_only else plan.has_changes
    return 2 if pending else 0
