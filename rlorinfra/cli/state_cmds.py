"""Commands on state: ``state list|show|rm|mv``, ``output``, ``show``, ``force-unlock``.

None of these talk to the control plane. Reading commands (``state list``,
``state show``, ``output``, ``show``) take no lock: the store replaces the file
atomically, so a reader sees either the old or the new state. Writing commands
(``state rm``, ``state mv``) hold the state lock for their read-modify-write.
``force-unlock`` removes a lock and so takes none.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from rlorinfra.cli.common import (
    SuggestingGroup,
    complete_state_job_names,
    echo_warning,
    file_option,
    get_globals,
    json_option,
    load_config,
    lock_timeout_option,
)
from rlorinfra.errors import StateError

OUTPUT_FIELDS = ("job_id", "job_name", "endpoint")


# ---------------------------------------------------------------- helpers


def _open_state(config_path: Path):
    """The loaded config and a store on its state file."""
    from rlorinfra.state.store import StateStore

    config = load_config(config_path)
    return config, StateStore(config.state_path)


def _record(state, name: str, store) -> Any:
    """The record of ``name``, or an error that points at ``state list``."""
    if name not in state.jobs:
        known = ", ".join(sorted(state.jobs)) or "none"
        raise StateError(
            f"No job named {name!r} in state",
            f"The state {store.path} has no job {name!r} (jobs in state: {known}). "
            "Run `rlorinfra state list` to see the names it tracks.",
        )
    return state.jobs[name]


def _echo_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False))


def _hcl(value: Any) -> str:
    # JSON literals read the same as HCL ones for strings, numbers, bools and lists.
    return json.dumps(value, ensure_ascii=False)


def _assignments(pairs: list[tuple[str, Any]], indent: str) -> list[str]:
    """``key = value`` lines with the ``=`` aligned, Terraform style."""
    width = max((len(key) for key, _ in pairs), default=0)
    return [f"{indent}{key:<{width}} = {_hcl(value)}" for key, value in pairs]


def render_job(name: str, record) -> str:
    """A job record as a readable block (``state show``, ``show``)."""
    data = record.to_dict()
    spec = data.pop("spec")
    top = [(key, value) for key, value in data.items() if value is not None]
    lines = [f"# {name}:", f'job "{name}" {{']
    lines += _assignments(top, "    ")
    if spec:
        lines.append("    spec = {")
        lines += _assignments(sorted(spec.items()), "        ")
        lines.append("    }")
    lines.append("}")
    return "\n".join(lines)


def _output_values(record) -> dict[str, str]:
    return {key: getattr(record, key) for key in OUTPUT_FIELDS}


def _render_output(values: dict[str, str]) -> list[str]:
    return ["{"] + _assignments(list(values.items()), "  ") + ["}"]


def check_display_name(name: str) -> str | None:
    """Why ``name`` cannot be a job display name, or None (the config loader's rules)."""
    from rlorinfra.config.fields import display_name_problem

    return display_name_problem(name)


# ---------------------------------------------------------------- state group


@click.group("state", cls=SuggestingGroup)
def state_group() -> None:
    """Inspect and edit state without touching jobs.

    \b
    Examples:
      rlorinfra state list
      rlorinfra state show grpo-policy-trainer --json
      rlorinfra state mv old-name new-name
      rlorinfra state rm grpo-policy-trainer     (forget; the job keeps running)
    """


@state_group.command("list")
@file_option
def state_list_cmd(config_path: Path) -> int:
    """List the job names in state, one per line.

    \b
    Example:
      rlorinfra state list -f prod.toml
    """
    _, store = _open_state(config_path)
    for name in sorted(store.read().jobs):
        click.echo(name)
    return 0


@state_group.command("show")
@click.argument("name", shell_complete=complete_state_job_names)
@file_option
@json_option
def state_show_cmd(name: str, config_path: Path, as_json: bool) -> int:
    """Show the recorded job NAME (job ID, endpoint, phase, spec).

    \b
    Examples:
      rlorinfra state show grpo-policy-trainer
      rlorinfra state show grpo-policy-trainer --json    # includes "job_id"
    """
    _, store = _open_state(config_path)
    record = _record(store.read(), name, store)
    if as_json:
        _echo_json(record.to_dict())
    else:
        click.echo(render_job(name, record))
    return 0


@state_group.command("rm")
@click.argument("names", metavar="NAME...", nargs=-1, required=True, shell_complete=complete_state_job_names)
@file_option
@lock_timeout_option
def state_rm_cmd(names: tuple[str, ...], config_path: Path, lock_timeout: float) -> int:
    """Forget jobs: remove NAME from state. The jobs keep running.

    The control-plane job is never deleted or stopped; rlorinfra only stops
    managing it. Adopt it again with `rlorinfra import NAME JOB_ID`.

    \b
    Example:
      rlorinfra state rm grpo-reference-trainer
    """
    from rlorinfra.state.lock import StateLock

    config, store = _open_state(config_path)
    with StateLock(store.path, "state rm", lock_timeout, config_path=config.path):
        state = store.read()
        removed = {name: _record(state, name, store) for name in dict.fromkeys(names)}
        _refuse_deposed(removed)
        for name in removed:
            state = state.without_job(name)
        store.write(state)
    for name in removed:
        click.echo(f"Removed {name}")
    click.echo(f"Successfully removed {len(removed)} job(s) from state.\n")
    _explain_removed(removed, config)
    return 0


def _refuse_deposed(removed: dict[str, Any]) -> None:
    """Never drop a deposed job silently: forgetting its record would leave it running untracked."""
    holding = {name: record.deposed_job_ids for name, record in removed.items() if record.deposed_job_ids}
    if not holding:
        return
    listing = "; ".join(f'"{name}" still tracks {", ".join(ids)}' for name, ids in holding.items())
    raise StateError(
        "Cannot remove a job that still tracks deposed jobs",
        f"{listing} (replaced, their deletion not yet confirmed). Removing the record would leave them "
        "running untracked. Run `rlorinfra apply` first: it deletes the deposed jobs and then `state rm` "
        "works. Nothing was changed.",
    )


def _explain_removed(removed: dict[str, Any], config) -> None:
    click.echo(
        "The job(s) keep running on the control plane: rlorinfra no longer manages them "
        "and will not stop or delete them. To manage one again:"
    )
    for name, record in removed.items():
        click.echo(f"  rlorinfra import {name} {record.job_id} -f {config.path}")
    for name in removed:
        if name in config.jobs:
            echo_warning(
                f"{name!r} is still declared in {config.path}. The next plan will find its live "
                f"job untracked and ask you to import it; remove [jobs.{name}] from the config "
                "if you meant to stop managing it."
            )


@state_group.command("mv")
@click.argument("old", shell_complete=complete_state_job_names)
@click.argument("new", shell_complete=complete_state_job_names)
@file_option
@lock_timeout_option
def state_mv_cmd(old: str, new: str, config_path: Path, lock_timeout: float) -> int:
    """Rename job OLD to NEW in state (the live job is not touched).

    Rename the [jobs.OLD] table of the config to [jobs.NEW] as well, or the
    next plan deletes NEW and creates OLD.

    \b
    Example:
      rlorinfra state mv grpo-policy-trainer policy-trainer
    """
    from rlorinfra.state.lock import StateLock

    problem = check_display_name(new)
    if problem:
        raise StateError(f"Invalid job name {new!r}", f"A job display name {problem}. Choose another NEW name.")
    config, store = _open_state(config_path)
    with StateLock(store.path, "state mv", lock_timeout, config_path=config.path):
        state = store.read()
        record = _record(state, old, store)
        if new in state.jobs:
            raise StateError(
                f"Job {new!r} already exists in state",
                f"The state {store.path} already tracks {new!r} (job {state.jobs[new].job_id}). "
                f"Remove it first with `rlorinfra state rm {new}` or choose another name.",
            )
        store.write(state.without_job(old).with_job(new, record))
    click.echo(f'Move "{old}" to "{new}"\nSuccessfully moved 1 job.\n')
    _explain_moved(old, new, record, config)
    return 0


def _explain_moved(old: str, new: str, record, config) -> None:
    click.echo(
        f"The live job {record.job_id} keeps its displayName {old!r}: the control plane cannot "
        "rename jobs, and rlorinfra tracks it by job ID."
    )
    if old in config.jobs and new not in config.jobs:
        echo_warning(
            f"{config.path} still declares [jobs.{old}]; rename it to [jobs.{new}], or the next "
            f"plan will want to delete {new!r} and create {old!r}."
        )


# ---------------------------------------------------------------- output, show


@click.command("output")
@click.argument("name", required=False, shell_complete=complete_state_job_names)
@file_option
@json_option
@click.option("--raw", is_flag=True, help="Print only NAME's endpoint, for shell scripts.")
def output_cmd(name: str | None, config_path: Path, as_json: bool, raw: bool) -> int:
    """Job IDs, job names and trainer endpoints from state.

    \b
    Examples:
      rlorinfra output                      every job
      rlorinfra output --json               {"NAME": {"job_id", "job_name", "endpoint"}}
      rlorinfra output NAME --raw           just NAME's trainer endpoint
    """
    if raw and (name is None or as_json):
        raise click.UsageError("--raw needs a NAME and cannot be combined with --json.")
    _, store = _open_state(config_path)
    state = store.read()
    if name is not None:
        return _output_one(_output_values(_record(state, name, store)), as_json, raw)
    values = {job: _output_values(record) for job, record in sorted(state.jobs.items())}
    if as_json:
        _echo_json(values)
    elif not values:
        echo_warning(f"No outputs found: the state {store.path} has no jobs. Run `rlorinfra apply` first.")
    else:
        click.echo(render_outputs_text(state))
    return 0


def render_outputs_text(state) -> str:
    """Every job's outputs as ``rlorinfra output`` prints them (also shown after apply)."""
    values = {job: _output_values(record) for job, record in sorted(state.jobs.items())}
    return "\n".join(f"{job} = " + "\n".join(_render_output(value)) for job, value in values.items())


def _output_one(values: dict[str, str], as_json: bool, raw: bool) -> int:
    if raw:
        click.echo(values["endpoint"])
    elif as_json:
        _echo_json(values)
    else:
        click.echo("\n".join(_render_output(values)))
    return 0


@click.command("show")
@click.argument("planfile", required=False, type=click.Path(path_type=Path, dir_okay=False))
@file_option
@json_option
def show_cmd(planfile: Path | None, config_path: Path, as_json: bool) -> int:
    """Show the current state, or the saved plan PLANFILE.

    Reads local files only (no control-plane calls, no lock).

    \b
    Examples:
      rlorinfra show                      every job in state
      rlorinfra show --json               the state document
      rlorinfra show release.plan         a plan saved with `plan --out`
    """
    if planfile is not None:
        return _show_plan(planfile, as_json)
    from rlorinfra.state.codec import encode_state

    _, store = _open_state(config_path)
    state = store.read()
    if as_json:
        click.echo(encode_state(state).decode("utf-8"), nl=False)
    else:
        click.echo(render_state(state, store.path))
    return 0


def render_state(state, path: Path) -> str:
    """Every job in state, like ``terraform show``."""
    if not state.jobs:
        return "The state file is empty. No jobs are managed."
    header = [f"# state: {path} (serial {state.serial}, lineage {state.lineage})"]
    if state.control_plane:
        cp = state.control_plane
        header.append(f"# control plane: {cp.get('url', '?')} (account {cp.get('account_id', '?')})")
    blocks = [render_job(name, record) for name, record in sorted(state.jobs.items())]
    return "\n".join(header) + "\n\n" + "\n\n".join(blocks)


def _show_plan(planfile: Path, as_json: bool) -> int:
    from rlorinfra.plan.document import plan_from_document
    from rlorinfra.plan.planfile import read_plan_file
    from rlorinfra.render.text import render_plan_text

    document = read_plan_file(planfile).document
    plan_from_document(document)  # refuses a damaged document with a clear PlanFileError
    if as_json:
        _echo_json(document)
    else:
        click.echo(render_plan_text(document, color=get_globals().color).rstrip("\n"))
    return 0


# ---------------------------------------------------------------- force-unlock


FORCE_UNLOCK_QUESTION = "Do you really want to force-unlock?"
FORCE_UNLOCK_EXPLANATION = (
    "  rlorinfra will remove the lock on the state.\n"
    "  This will allow local rlorinfra commands to modify this state, even though it\n"
    "  may still be in use. Only 'yes' will be accepted to confirm."
)


@click.command("force-unlock")
@click.argument("lock_id")
@file_option
@click.option("--force", is_flag=True, help="Do not ask for confirmation (Terraform's -force).")
def force_unlock_cmd(lock_id: str, config_path: Path, force: bool) -> int:
    """Remove the state lock LOCK_ID left by a run that is gone.

    LOCK_ID is the ID shown by the "Error acquiring the state lock" message;
    a wrong ID is refused. A live run cannot be stopped this way: it keeps its
    OS lock on the removed file while the next run locks a new one, so only
    use this when the other run is dead or hung for good.

    Asks for confirmation ('yes') unless --force (or -force) is given; without
    a terminal to ask on, --force is required.

    \b
    Examples:
      rlorinfra force-unlock 0b1c8e55-7a0e-4f43-9d54-1c9b9d3f8a10 -f prod.toml
      rlorinfra force-unlock -force 0b1c8e55-7a0e-4f43-9d54-1c9b9d3f8a10
    """
    from rlorinfra.cli.runtime import ask_for_yes, stdin_is_tty
    from rlorinfra.state.lock import force_unlock, lock_info_path, read_lock_info, resolve_state_path

    config = load_config(config_path)
    state_path = resolve_state_path(config.state_path)
    holder = read_lock_info(state_path) if lock_info_path(state_path).exists() else None
    if holder is None or holder.id != lock_id:
        force_unlock(state_path, lock_id)  # refuses (no lock, unreadable, wrong ID) and changes nothing
    if not force:
        if not stdin_is_tty():
            raise StateError(
                "No confirmation for force-unlock: standard input is not a terminal",
                "rlorinfra force-unlock asks for confirmation before removing a lock. In scripts, "
                f"pass --force: `rlorinfra force-unlock --force {lock_id}`. Nothing was changed.",
            )
        if not ask_for_yes(FORCE_UNLOCK_QUESTION, FORCE_UNLOCK_EXPLANATION):
            raise StateError("force-unlock cancelled.", "The lock was not removed. Nothing was changed.")
    force_unlock(state_path, lock_id)
    click.echo(
        "rlorinfra state has been successfully unlocked!\n\n"
        "The state has been unlocked, and rlorinfra commands should now be able to "
        "obtain a new lock on the state."
    )
    return 0
