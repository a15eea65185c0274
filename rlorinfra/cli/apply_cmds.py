"""``rlorinfra apply``, ``destroy`` and ``import``."""

from __future__ import annotations

from pathlib import Path

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
from rlorinfra.cli.plan_cmds import TARGETING_APPLY, TARGETING_PLAN, plan_options, render_text, untargeted_note
from rlorinfra.cli.runtime import confirm_or_fail, insecure_option, open_workspace
from rlorinfra.errors import ApplyError, InterruptedRun

RESULT_WORDS = {
    "create": "created",
    "resume": "resumed",
    "replace": "replaced",
    "stop": "stopped",
    "delete": "deleted",
    "wait": "ready",
}


def execution_options(func):
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


def _options(parallelism, no_wait, timeout, pending_timeout):
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
    planfile,
    config_path,
    refresh,
    health_check,
    targets,
    replace_names,
    auto_approve,
    parallelism,
    no_wait,
    timeout,
    pending_timeout,
    as_json,
    lock_timeout,
    insecure,
):
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
        verb="apply",
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
@execution_options
@json_option
@lock_timeout_option
@insecure_option
def destroy_cmd(
    config_path, targets, auto_approve, parallelism, no_wait, timeout, pending_timeout, as_json, lock_timeout, insecure
):
    """Delete every managed job (or only --target ones). Respects prevent_destroy.

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
    """
    from rlorinfra.operations import PlanRequest

    request = PlanRequest(destroy=True, targets=targets)
    return run_apply(
        config_path,
        request,
        planfile=None,
        auto_approve=auto_approve,
        as_json=as_json,
        lock_timeout=lock_timeout,
        insecure=insecure,
        options=_options(parallelism, no_wait, timeout, pending_timeout),
        verb="destroy",
    )


def run_apply(config_path, request, *, planfile, auto_approve, as_json, lock_timeout, insecure, options, verb):
    """Shared body of apply and destroy."""
    from rlorinfra.operations import lock

    if as_json and not (auto_approve or planfile):
        raise click.UsageError("--json needs --auto-approve (or a saved PLANFILE): a JSON stream cannot prompt.")
    ws = open_workspace(config_path, insecure)
    try:
        with lock(ws, verb, lock_timeout):
            result, plan = _plan_and_execute(ws, request, planfile, auto_approve, as_json, options, verb)
    finally:
        ws.close()
    if result is None:
        return 0
    _report(result, plan, as_json=as_json, verb=verb, targets=tuple(request.targets) if not planfile else ())
    return 0


def _plan_and_execute(ws, request, planfile, auto_approve, as_json, options, verb):
    from rlorinfra.cli.views import emit_json, make_view
    from rlorinfra.operations import build_plan, execute, load_saved_plan

    state = ws.store.read()
    if planfile:
        plan, document, live = load_saved_plan(ws, state, planfile)
    else:
        outcome = build_plan(ws, state, request)
        plan, document, live = outcome.plan, outcome.document, outcome.live
        for note in outcome.notes:
            echo_warning(note)
    targets = tuple(request.targets) if not planfile else ()
    if targets:
        echo_warning(TARGETING_PLAN)
    _show_plan(document, as_json)
    note = untargeted_note(plan, targets)
    if note and not as_json:
        click.echo(note)
    if not plan.has_changes:
        result = execute(ws, state, plan, live, options, lambda e: None)  # records refreshed live states
        _finish_line(verb, result, as_json)
        return None, plan
    if not (auto_approve or planfile):
        confirm_or_fail(verb)
    view = make_view(plan, as_json=as_json, color=get_globals().color)
    try:
        result = execute(ws, state, plan, live, options, view.on_event)
    finally:
        view.finish()  # stop a live view's ticker before any error or summary is printed
    if as_json:
        emit_json({"type": "outcomes", "outcomes": [o.__dict__ for o in result.outcomes]})
    return result, plan


def _show_plan(document, as_json):
    if as_json:
        from rlorinfra.cli.views import emit_json

        emit_json({"type": "plan", "plan": document})
    else:
        click.echo(render_text(document))


def _report(result, plan, *, as_json: bool, verb: str, targets: tuple[str, ...] = ()) -> None:
    """Per-job summary, then success line and outputs, or the typed error."""
    if not as_json:
        click.echo("")
        for outcome in result.outcomes:
            click.echo(_summary_line(outcome))
    if result.interrupted:
        raise InterruptedRun("Interrupted: stopped waiting", _interrupted_detail(result.outcomes))
    if result.failed:
        raise ApplyError(
            f"{len(result.failed)} of {len(result.outcomes)} job(s) did not converge", _failure_detail(result)
        )
    if targets:
        echo_warning(TARGETING_APPLY)
    _finish_line(verb, result, as_json)


def _failure_detail(result) -> str:
    """What failed, and only when something else succeeded, that the rest was applied."""
    lines = "\n".join(f"  {o.name}: {o.message}" for o in result.failed)
    applied = [o for o in result.outcomes if o.ok]
    if applied:
        rest = "The other jobs were applied and recorded."
    else:
        rest = "No change was applied: every one failed (state records what the control plane did)."
    return f"{lines}\n{rest} Fix the cause and run `rlorinfra apply` again; `rlorinfra plan` shows what is left."


def _interrupted_detail(outcomes) -> str:
    from rlorinfra.apply import NOT_STARTED

    waiting = [o.name for o in outcomes if o.pending and o.message != NOT_STARTED]
    unstarted = [o.name for o in outcomes if o.message == NOT_STARTED]
    parts = ["State was written for everything that happened."]
    if waiting:
        parts.append(f"Still provisioning: {', '.join(waiting)}.")
    if unstarted:
        parts.append(f"Not started: {', '.join(unstarted)}.")
    return " ".join(parts) + " Run `rlorinfra apply` again to finish."


def _summary_line(outcome) -> str:
    if outcome.ok:
        word = RESULT_WORDS.get(outcome.action, outcome.action)
        return (
            f"  {outcome.name}: {word}"
            + (f" ({outcome.job_id})" if outcome.job_id else "")
            + (f" - {outcome.message}" if outcome.pending else "")
        )
    mark = "pending" if outcome.pending else "FAILED"
    return f"  {outcome.name}: {mark}: {outcome.message}"


def _finish_line(verb: str, result, as_json: bool) -> None:
    from rlorinfra.apply import ApplyResult
    from rlorinfra.plan.model import Action

    result = result or ApplyResult()
    if verb == "destroy":
        line = f"Destroy complete! Resources: {result.count(Action.DELETE)} destroyed."
    else:
        counts = [
            f"{result.count(a)} {RESULT_WORDS[a.value]}"
            for a in (Action.CREATE, Action.RESUME, Action.REPLACE, Action.STOP, Action.DELETE)
        ]
        line = "Apply complete! Resources: " + ", ".join(counts) + "."
    if as_json:
        from rlorinfra.cli.views import emit_json

        emit_json({"type": "summary", "message": line, "state_jobs": _outputs(result.state)})
        return
    click.echo("\n" + line)
    outputs = _outputs_text(result.state)
    if outputs:
        click.echo("\nOutputs:\n\n" + outputs)
    if verb == "apply":
        from rlorinfra.cli.runtime import emulator_note

        note = emulator_note(result.state)
        if note:
            click.echo("\n" + note)


def _outputs(state) -> dict:
    if state is None:
        return {}
    return {
        name: {"job_id": r.job_id, "job_name": r.job_name, "endpoint": r.endpoint}
        for name, r in sorted(state.jobs.items())
    }


def _outputs_text(state) -> str:
    from rlorinfra.cli.state_cmds import render_outputs_text

    return render_outputs_text(state) if state is not None else ""


@click.command("import")
@click.argument("name", shell_complete=complete_job_names)
@click.argument("job_id")
@file_option
@click.option("--generate-config", is_flag=True, help="Print the TOML block for the job, to paste into the config.")
@lock_timeout_option
@insecure_option
def import_cmd(name, job_id, config_path, generate_config, lock_timeout, insecure):
    """Adopt an existing live job JOB_ID under display name NAME.

    \b
    Examples:
      rlorinfra import grpo-policy-trainer training-api-service-1a2b3c4d
      rlorinfra import my-trainer my-job-id --generate-config >> rlorinfra.toml
    """
    from rlorinfra.operations import generated_job_block, import_job, lock

    ws = open_workspace(config_path, insecure)
    try:
        with lock(ws, "import", lock_timeout):
            before = ws.store.read()
            state = import_job(ws, before, name, job_id)
    finally:
        ws.close()
    record = state.jobs[name]
    if generate_config:
        click.echo(generated_job_block(ws.config, name, record), nl=False)
        if record.unread_fields:
            echo_warning(
                f"the control plane does not return {', '.join(record.unread_fields)}: declare "
                "the values the job was created with (see the comment in the block)."
            )
        click.echo(f'# Imported {job_id} as "{name}". Paste the block above into {config_path}.', err=True)
        return 0
    if name in before.jobs and before.jobs[name].job_id == job_id:
        click.echo(f'Job {job_id} is already managed as "{name}": nothing to import.')
    else:
        click.echo(f'Import successful! Job {job_id} is now managed as "{name}".')
    if name not in ws.config.jobs:
        echo_warning(
            f'"{name}" is not declared in {config_path}: the next plan would delete it. '
            f"Run `rlorinfra import {name} {job_id} --generate-config` to print its TOML block."
        )
    return 0
