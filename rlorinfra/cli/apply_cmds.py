"""``rlorinfra apply``, ``destroy`` and ``import``."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from rlorinfra.cli.common import (
    complete_job_names,
    complete_state_job_names,
    echo_warning,
    file_option,
    get_globals,
    json_option,
    lock_timeout_option,
)
from rlorinfra.cli.exit_codes import ExitCode
from rlorinfra.cli.outputs import render_outputs_text, state_outputs
from rlorinfra.cli.plan_cmds import TARGETING_APPLY, plan_options
from rlorinfra.cli.runtime import insecure_option, open_workspace
from rlorinfra.cli.ui import ClickUI, PlanFormat
from rlorinfra.operations.ui import Operation

if TYPE_CHECKING:
    from rlorinfra.apply import ApplyOptions, ApplyResult, Outcome
    from rlorinfra.operations import ApplyRun, PlanRequest

RESULT_WORDS = {
    "create": "created",
    "resume": "resumed",
    "update": "updated",
    "replace": "replaced",
    "stop": "stopped",
    "delete": "deleted",
    "wait": "ready",
}


def execution_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """Options that steer execution (apply and destroy); budgets are finite seconds or durations (Seconds)."""
    from rlorinfra.cli.common import Seconds

    func = click.option(
        "--pending-timeout",
        type=Seconds(min=0),
        default=172800.0,
        show_default=True,
        metavar="SECONDS",
        help="Budget while a job is PENDING for capacity (or 2h, 2d...).",
    )(func)
    func = click.option(
        "--timeout",
        type=Seconds(min=0),
        default=900.0,
        show_default=True,
        metavar="SECONDS",
        help="Readiness budget per job after placement (or 15m...).",
    )(func)
    func = click.option("--no-wait", is_flag=True, help="Record jobs as soon as the control plane accepted them.")(func)
    func = click.option(
        "--parallelism",
        type=click.IntRange(min=1, max=256),
        default=10,
        show_default=True,
        help="How many control-plane changes run at once.",
    )(func)
    func = click.option("--auto-approve", is_flag=True, help="Skip the interactive 'yes' confirmation.")(func)
    return func


def _options(parallelism: int, no_wait: bool, timeout: float, pending_timeout: float) -> ApplyOptions:
    from rlorinfra.apply import ApplyOptions

    return ApplyOptions(parallelism=parallelism, wait=not no_wait, timeout_s=timeout, pending_timeout_s=pending_timeout)


@click.command("apply")
@click.argument("planfile", required=False, type=click.Path(path_type=Path, dir_okay=False))
@file_option
@plan_options
@execution_options
@json_option
@lock_timeout_option
@insecure_option
def apply_cmd(
    planfile: Path | None,
    config_path: Path,
    refresh: bool,
    health_check: bool,
    targets: tuple[str, ...],
    replace_names: tuple[str, ...],
    auto_approve: bool,
    parallelism: int,
    no_wait: bool,
    timeout: float,
    pending_timeout: float,
    as_json: bool,
    lock_timeout: float,
    insecure: bool,
) -> ExitCode:
    """Create, resume, stop or delete jobs until the live world matches the config.

    Without PLANFILE, plans first (the plan options --refresh/--no-refresh,
    --health-check/--no-health-check, --target and --replace work as in
    `rlorinfra plan`), shows the plan and asks for 'yes' unless --auto-approve.
    With a PLANFILE from `rlorinfra plan --out`, applies exactly that plan
    without asking (refused if the state, config or control plane changed
    since; the plan options then belong to `plan --out`).

    Then runs up to --parallelism changes at once and waits for each job to be
    ready: --pending-timeout while it waits for capacity, --timeout after it is
    placed; --no-wait records jobs as soon as they are accepted. --lock-timeout
    waits for the state lock. Times are seconds or durations such as 30s, 2m,
    1h. --json prints JSON lines; it needs --auto-approve or a PLANFILE.

    --pricing FILE takes the [pricing] table from a TOML file; --max-hourly-delta
    USD fails the plan, before any change, when it adds more USD per hour (a
    PLANFILE is re-checked with the prices and limit in force now).

    \b
    Examples:
      rlorinfra apply
      rlorinfra apply --auto-approve --parallelism 20
      rlorinfra apply --target grpo-policy-trainer --no-health-check
      rlorinfra apply release.plan
    """
    from rlorinfra.operations import PlanRequest

    if planfile and (targets or replace_names or not refresh):
        raise click.UsageError(
            "A saved PLANFILE is applied exactly as planned: --target, --replace and "
            "--no-refresh belong to `rlorinfra plan --out PLANFILE`."
        )
    request = PlanRequest(refresh=refresh, targets=targets, replace=replace_names, health_check=health_check)
    return run_apply(
        config_path,
        request,
        planfile=planfile,
        auto_approve=auto_approve,
        as_json=as_json,
        lock_timeout=lock_timeout,
        insecure=insecure,
        options=_options(parallelism, no_wait, timeout, pending_timeout),
        verb=Operation.APPLY,
    )


@click.command("destroy")
@file_option
@click.option(
    "--target",
    "targets",
    multiple=True,
    metavar="NAME",
    shell_complete=complete_state_job_names,
    help="Only destroy this job (repeatable).",
)
@click.option(
    "--exclude-protected",
    is_flag=True,
    help="Leave protected resources (prevent_destroy, or protected in state) out instead of failing.",
)
@execution_options
@json_option
@lock_timeout_option
@insecure_option
def destroy_cmd(
    config_path: Path,
    targets: tuple[str, ...],
    exclude_protected: bool,
    auto_approve: bool,
    parallelism: int,
    no_wait: bool,
    timeout: float,
    pending_timeout: float,
    as_json: bool,
    lock_timeout: float,
    insecure: bool,
) -> ExitCode:
    """Delete every managed job (or only --target ones). Respects protection.

    A protected resource (prevent_destroy, or `protected` in state) makes the
    plan fail; --exclude-protected destroys the rest and leaves those, with a note.

    Plans the deletion (dependents first), shows it and asks for 'yes' unless
    --auto-approve. Runs up to --parallelism deletions at once and waits for
    each to be gone within --timeout (and --pending-timeout); --no-wait records
    a deletion as soon as the control plane accepted it. --lock-timeout waits
    for the state lock. Times are seconds or durations such as 30s, 2m, 1h.
    --json prints JSON lines; it needs --auto-approve, as there is no prompt.

    \b
    Examples:
      rlorinfra destroy
      rlorinfra destroy --target grpo-policy-trainer --auto-approve
      rlorinfra destroy -auto-approve -lock-timeout=30s
      rlorinfra destroy --exclude-protected
    """
    from rlorinfra.operations import PlanRequest

    request = PlanRequest(destroy=True, targets=targets, exclude_protected=exclude_protected)
    return run_apply(
        config_path,
        request,
        planfile=None,
        auto_approve=auto_approve,
        as_json=as_json,
        lock_timeout=lock_timeout,
        insecure=insecure,
        options=_options(parallelism, no_wait, timeout, pending_timeout),
        verb=Operation.DESTROY,
    )


def run_apply(
    config_path: Path,
    request: PlanRequest,
    *,
    planfile: Path | None,
    auto_approve: bool,
    as_json: bool,
    lock_timeout: float,
    insecure: bool,
    options: ApplyOptions,
    verb: Operation,
) -> ExitCode:
    """Shared body of apply and destroy: the apply flow, then the summary."""
    from rlorinfra.operations import run_apply as apply_flow

    if as_json and not (auto_approve or planfile):
        raise click.UsageError("--json needs --auto-approve (or a saved PLANFILE): a JSON stream cannot prompt.")
    ws = open_workspace(config_path, insecure)
    ui = ClickUI(plan_format=PlanFormat.JSON_LINES if as_json else PlanFormat.TEXT, color=get_globals().color)
    try:
        run = apply_flow(
            ws, request, ui, options, planfile=planfile, auto_approve=auto_approve, lock_timeout=lock_timeout
        )
    finally:
        ws.close()
    _report(run, as_json=as_json, verb=verb)
    return ExitCode.OK


def _report(run: ApplyRun, *, as_json: bool, verb: Operation) -> None:
    """Per-job summary, then success line and outputs, or the typed error."""
    from rlorinfra.operations import raise_for_result

    result = run.result
    if not run.executed:
        _finish_line(verb, result, as_json)
        return
    if as_json:
        from rlorinfra.cli.views import emit_json

        emit_json({"type": "outcomes", "outcomes": [o.__dict__ for o in result.outcomes]})
    else:
        click.echo("")
        for outcome in result.outcomes:
            click.echo(_summary_line(outcome))
    raise_for_result(result)
    if run.outcome.targets:
        echo_warning(TARGETING_APPLY)
    _finish_line(verb, result, as_json)


def _summary_line(outcome: Outcome) -> str:
    if outcome.ok:
        word = RESULT_WORDS.get(outcome.action, outcome.action)
        return (
            f"  {outcome.label}: {word}"
            + (f" ({outcome.job_id})" if outcome.job_id else "")
            + (f" - {outcome.message}" if outcome.pending else "")
        )
    mark = "pending" if outcome.pending else "FAILED"
    return f"  {outcome.label}: {mark}: {outcome.message}"


def _finish_line(verb: Operation, result: ApplyResult, as_json: bool) -> None:
    from rlorinfra.plan.model import Action

    if verb is Operation.DESTROY:
        line = f"Destroy complete! Resources: {result.count(Action.DELETE)} destroyed."
    else:
        # In-place updates (deployments) are counted only when there are some, so a run
        # without any keeps the line every script and doc already knows.
        shown = (Action.CREATE, Action.UPDATE, Action.RESUME, Action.REPLACE, Action.STOP, Action.DELETE)
        counts = [
            f"{result.count(a)} {RESULT_WORDS[a.value]}" for a in shown if a is not Action.UPDATE or result.count(a)
        ]
        line = "Apply complete! Resources: " + ", ".join(counts) + "."
    if as_json:
        from rlorinfra.cli.views import emit_json

        emit_json({"type": "summary", "message": line, "state_jobs": state_outputs(result.state)})
        return
    click.echo("\n" + line)
    outputs = render_outputs_text(result.state)
    if outputs:
        click.echo("\nOutputs:\n\n" + outputs)
    if verb is Operation.APPLY:
        from rlorinfra.cli.runtime import emulator_note

        note = emulator_note(result.state)
        if note:
            click.echo("\n" + note)


@click.command("import")
@click.argument("name", shell_complete=complete_job_names)
@click.argument("job_id", metavar="ID")
@file_option
@click.option(
    "--generate-config", is_flag=True, help="Print the TOML block for the resource, to paste into the config."
)
@lock_timeout_option
@insecure_option
def import_cmd(
    name: str, job_id: str, config_path: Path, generate_config: bool, lock_timeout: float, insecure: bool
) -> ExitCode:
    """Adopt an existing live job ID under display name NAME, or a deployment as deployment.ID.

    A deployment's name is its ID (the key of [deployments.ID]), so ID must
    repeat it.

    \b
    Examples:
      rlorinfra import grpo-policy-trainer training-api-service-1a2b3c4d
      rlorinfra import my-trainer my-job-id --generate-config >> rlorinfra.toml
      rlorinfra import deployment.grpo-rollout grpo-rollout --generate-config
    """
    from rlorinfra.model.address import Address, Kind
    from rlorinfra.operations import generated_job_block, run_import

    address = Address.parse(name)
    if address.kind is Kind.DEPLOYMENT:
        return _import_deployment(address.name, job_id, config_path, generate_config, lock_timeout, insecure)
    name = address.name  # job.NAME and NAME alike
    ws = open_workspace(config_path, insecure)
    try:
        imported = run_import(ws, name, job_id, lock_timeout=lock_timeout)
    finally:
        ws.close()
    record = imported.record
    if generate_config:
        click.echo(generated_job_block(ws.config, name, record), nl=False)
        if record.unread_fields:
            echo_warning(
                f"the control plane does not return {', '.join(record.unread_fields)}: declare "
                "the values the job was created with (see the comment in the block)."
            )
        click.echo(f'# Imported {job_id} as "{name}". Paste the block above into {config_path}.', err=True)
        return ExitCode.OK
    if imported.already_managed:
        click.echo(f'Job {job_id} is already managed as "{name}": nothing to import.')
    else:
        click.echo(f'Import successful! Job {job_id} is now managed as "{name}".')
    if name not in ws.config.jobs:
        echo_warning(
            f'"{name}" is not declared in {config_path}: the next plan would delete it. '
            f"Run `rlorinfra import {name} {job_id} --generate-config` to print its TOML block."
        )
    return ExitCode.OK


def _import_deployment(
    deployment_id: str, given_id: str, config_path: Path, generate_config: bool, lock_timeout: float, insecure: bool
) -> ExitCode:
    """``import deployment.ID ID``: adopt the live deployment, say what its trainer link names."""
    from rlorinfra.operations import generated_deployment_block, run_import_deployment

    ws = open_workspace(config_path, insecure)
    try:
        imported = run_import_deployment(ws, deployment_id, given_id, lock_timeout=lock_timeout)
    finally:
        ws.close()
    address = f"deployment.{deployment_id}"
    if generate_config:
        click.echo(generated_deployment_block(imported.record, imported.trainer_note), nl=False)
        click.echo(f"# Imported {address}. Paste the block above into {config_path}.", err=True)
    elif imported.already_managed:
        click.echo(f"Deployment {deployment_id} is already managed as {address}: nothing to import.")
    else:
        click.echo(f"Import successful! Deployment {deployment_id} is now managed as {address}.")
    if imported.trainer_note:
        echo_warning(imported.trainer_note)
    if not generate_config and deployment_id not in ws.config.deployments:
        echo_warning(
            f"{address} is not declared in {config_path}: the next plan would delete it. "
            f"Run `rlorinfra import {address} {deployment_id} --generate-config` to print its TOML block."
        )
    return ExitCode.OK
