"""Commands on state: ``state list|show|rm|mv|unprotect|pull|push|migrate``, ``output``, ``show``, ``force-unlock``.

None of these talk to the control plane. Reading commands (``state list``,
``state show``, ``output``, ``show``) take no lock: the store replaces the file
atomically, so a reader sees either the old or the new state. Writing commands
(``state rm``, ``state mv``, ``state unprotect``, ``state push``, ``state migrate``) hold the state lock for
their read-modify-write.
``force-unlock`` removes a lock and so takes none.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from rlorinfra.cli.common import (
    SuggestingGroup,
    complete_state_job_names,
    echo_warning,
    file_option,
    get_globals,
    json_option,
    lock_timeout_option,
)
from rlorinfra.cli.exit_codes import ExitCode
from rlorinfra.cli.outputs import (
    assignments,
    output_key,
    render_outputs,
    render_outputs_text,
    resource_outputs,
    state_outputs,
)
from rlorinfra.cli.runtime import open_workspace
from rlorinfra.cli.ui import ClickUI

if TYPE_CHECKING:
    from rlorinfra.config.model import Config
    from rlorinfra.model.address import Address
    from rlorinfra.operations.workspace import Workspace
    from rlorinfra.state.model import JobRecord, Record, State

# ---------------------------------------------------------------- helpers


def _open_state(config_path: Path) -> Workspace:
    """The command's workspace: its config and state store (no control plane is contacted)."""
    return open_workspace(config_path, show_warnings=False)


def _echo_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False))


def render_job(name: str, record: JobRecord) -> str:
    """A job record as a readable block (``state show``, ``show``)."""
    return render_record("job", name, name, record)


def render_record(kind: str, header: str, name: str, record: Record) -> str:
    """A record as a readable block: ``# header:`` then ``kind "name" { ... }``."""
    data = record.to_dict()
    spec = data.pop("spec")
    top = [(key, value) for key, value in data.items() if value is not None]
    lines = [f"# {header}:", f'{kind} "{name}" {{']
    lines += assignments(top, "    ")
    if spec:
        lines.append("    spec = {")
        lines += assignments(sorted(spec.items()), "        ")
        lines.append("    }")
    lines.append("}")
    return "\n".join(lines)


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
      rlorinfra state pull > backup.state.json
      rlorinfra state migrate --from prod.state.json
    """


@state_group.command("list")
@file_option
def state_list_cmd(config_path: Path) -> ExitCode:
    """List the resources in state, one per line: job names, then deployment.NAME addresses.

    \b
    Example:
      rlorinfra state list -f prod.toml
    """
    from rlorinfra.operations import listed_addresses

    for address in listed_addresses(_open_state(config_path).store.read()):
        click.echo(output_key(address))
    return ExitCode.OK


@state_group.command("show")
@click.argument("name", shell_complete=complete_state_job_names)
@file_option
@json_option
def state_show_cmd(name: str, config_path: Path, as_json: bool) -> ExitCode:
    """Show the recorded resource NAME: a job (job ID, endpoint, phase, spec) or deployment.NAME.

    \b
    Examples:
      rlorinfra state show grpo-policy-trainer
      rlorinfra state show grpo-policy-trainer --json    # includes "job_id"
      rlorinfra state show deployment.grpo-rollout       # link, bucket URL, observed state
    """
    from rlorinfra.operations import resource_of

    store = _open_state(config_path).store
    address, record = resource_of(store.read(), name, store.backend.describe())
    if as_json:
        _echo_json(record.to_dict())
    else:
        click.echo(_render_resource(address, record))
    return ExitCode.OK


def _render_resource(address: Address, record: Record) -> str:
    return render_record(address.kind.value, output_key(address), address.name, record)


@state_group.command("rm")
@click.argument("names", metavar="NAME...", nargs=-1, required=True, shell_complete=complete_state_job_names)
@file_option
@lock_timeout_option
def state_rm_cmd(names: tuple[str, ...], config_path: Path, lock_timeout: float) -> ExitCode:
    """Forget resources: remove NAME (a job, or deployment.NAME) from state. They keep running.

    The control-plane job or deployment is never deleted or stopped; rlorinfra only
    stops managing it. Adopt it again with `rlorinfra import NAME ID`.

    \b
    Examples:
      rlorinfra state rm grpo-reference-trainer
      rlorinfra state rm deployment.grpo-rollout
    """
    from rlorinfra.operations import state_rm
    from rlorinfra.state.model import JobRecord

    ws = _open_state(config_path)
    removed = state_rm(ws, names, lock_timeout=lock_timeout)
    for name in removed:
        click.echo(f"Removed {name}")
    jobs = {name: r for name, r in removed.items() if isinstance(r, JobRecord)}
    others = {name: r for name, r in removed.items() if not isinstance(r, JobRecord)}
    if jobs:
        click.echo(f"Successfully removed {len(jobs)} job(s) from state.\n")
        _explain_removed(jobs, ws.config)
    if others:
        click.echo(f"Successfully removed {len(others)} deployment(s) from state.\n")
        _explain_removed_deployments(others, ws.config)
    return ExitCode.OK


def _explain_removed_deployments(removed: Mapping[str, Record], config: Config) -> None:
    click.echo(
        "The deployment(s) keep serving on the control plane: rlorinfra no longer manages them "
        "and will not scale, re-attach or delete them. To manage one again:"
    )
    for record in removed.values():
        click.echo(f"  rlorinfra import deployment.{record.resource_id} {record.resource_id} -f {config.path}")
    for record in removed.values():
        if record.resource_id in config.deployments:
            echo_warning(
                f"deployment.{record.resource_id} is still declared in {config.path}. The next plan will find "
                "its live deployment untracked and ask you to import it; remove "
                f"[deployments.{record.resource_id}] from the config if you meant to stop managing it."
            )


def _explain_removed(removed: dict[str, JobRecord], config: Config) -> None:
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


@state_group.command("unquarantine")
@click.argument("name", metavar="ADDRESS", shell_complete=complete_state_job_names)
@file_option
@lock_timeout_option
def state_unquarantine_cmd(name: str, config_path: Path, lock_timeout: float) -> ExitCode:
    """Let `rlorinfra watch` act on ADDRESS again after it quarantined it (its resume budget was spent).

    Clears the quarantine and the resume history recorded in state; nothing live changes.

    \b
    Examples:
      rlorinfra state unquarantine job.grpo-policy
    """
    from rlorinfra.operations.state_edits import state_unquarantine

    ws = _open_state(config_path)
    address, was = state_unquarantine(ws, name, lock_timeout=lock_timeout)
    if was:
        click.echo(f"{address} is no longer quarantined: watch may resume it again.")
    else:
        click.echo(f"{address} was not quarantined: nothing to do.")
    return ExitCode.OK


@state_group.command("mv")
@click.argument("old", shell_complete=complete_state_job_names)
@click.argument("new", shell_complete=complete_state_job_names)
@file_option
@lock_timeout_option
def state_mv_cmd(old: str, new: str, config_path: Path, lock_timeout: float) -> ExitCode:
    """Rename job OLD to NEW in state (the live job is not touched).

    Rename the [jobs.OLD] table of the config to [jobs.NEW] as well, or the
    next plan deletes NEW and creates OLD.

    \b
    Example:
      rlorinfra state mv grpo-policy-trainer policy-trainer
    """
    from rlorinfra.operations import state_mv

    ws = _open_state(config_path)
    record = state_mv(ws, old, new, lock_timeout=lock_timeout)
    click.echo(f'Move "{old}" to "{new}"\nSuccessfully moved 1 job.\n')
    _explain_moved(old, new, record, ws.config)
    return ExitCode.OK


def _explain_moved(old: str, new: str, record: JobRecord, config: Config) -> None:
    click.echo(
        f"The live job {record.job_id} keeps its displayName {old!r}: the control plane cannot "
        "rename jobs, and rlorinfra tracks it by job ID."
    )
    if old in config.jobs and new not in config.jobs:
        echo_warning(
            f"{config.path} still declares [jobs.{old}]; rename it to [jobs.{new}], or the next "
            f"plan will want to delete {new!r} and create {old!r}."
        )


@state_group.command("unprotect")
@click.argument("address", shell_complete=complete_state_job_names)
@file_option
@lock_timeout_option
def state_unprotect_cmd(address: str, config_path: Path, lock_timeout: float) -> ExitCode:
    """Clear the protection state recorded for ADDRESS (job.NAME, deployment.ID, or NAME).

    prevent_destroy = true is recorded in state as `protected`, so removing the
    block does not make the resource deletable. This clears it (under the state
    lock, bumping the serial); nothing on the control plane changes. If the block
    still says prevent_destroy = true, the next apply records it again.

    \b
    Example:
      rlorinfra state unprotect job.grpo-policy-trainer
    """
    from rlorinfra.operations import state_unprotect

    ws = _open_state(config_path)
    try:
        found, _, changed = state_unprotect(ws, address, lock_timeout=lock_timeout)
    finally:
        ws.close()
    if not changed:
        click.echo(f"{found} is not protected in state; nothing to change.")
        return ExitCode.OK
    click.echo(f"Unprotected {found}: a plan may now delete or replace it.")
    declared = ws.config.jobs if found.kind.value == "job" else ws.config.deployments
    if found.name in declared:
        echo_warning(
            f"{found} is still declared in {ws.config.path}; if its block says prevent_destroy = true, "
            "the next apply protects it again."
        )
    return ExitCode.OK


# ---------------------------------------------------------------- pull, push, migrate


@state_group.command("pull")
@file_option
def state_pull_cmd(config_path: Path) -> ExitCode:
    """Print the state JSON exactly as the configured backend stores it.

    Prints nothing (and says so on stderr) when no state is stored yet. Takes
    no lock: a backend replaces its state atomically.

    \b
    Example:
      rlorinfra state pull > prod.state.json
    """
    from rlorinfra.operations import state_pull

    ws = _open_state(config_path)
    data = state_pull(ws)
    if not data:
        echo_warning(f"No state is stored in {ws.state_where()} yet.")
        return ExitCode.OK
    click.echo(data, nl=False)  # bytes go to the binary stream untouched: exactly what is stored
    return ExitCode.OK


@state_group.command("push")
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False))
@file_option
@lock_timeout_option
@click.option("--force", is_flag=True, help="Push even if the lineage differs or the serial is not higher.")
def state_push_cmd(file: Path, config_path: Path, lock_timeout: float, force: bool) -> ExitCode:
    """Replace the configured backend's state with FILE, under the state lock.

    Refused unless FILE has the stored state's lineage and a higher serial
    (it is newer history of the same state); --force (or -force) overrides
    that with a warning. FILE keeps its lineage and serial in the backend
    (a forced push of a lower serial gets the stored serial + 1: the serial
    never goes backwards).

    \b
    Example:
      rlorinfra state push fixed.state.json
    """
    from rlorinfra.operations import state_push

    ws = _open_state(config_path)
    result = state_push(ws, file, ClickUI(color=get_globals().color), force=force, lock_timeout=lock_timeout)
    click.echo(f"Pushed {file} to {result.where} (lineage {result.lineage}, serial {result.serial}).")
    return ExitCode.OK


@state_group.command("migrate")
@click.option(
    "--from",
    "source",
    required=True,
    type=click.Path(path_type=Path, dir_okay=False),
    help="The local state file to copy into the configured backend.",
)
@file_option
@lock_timeout_option
def state_migrate_cmd(source: Path, config_path: Path, lock_timeout: float) -> ExitCode:
    """Copy a local state file into the configured backend, keeping its lineage and serial.

    Holds the local file's lock and the backend's. Running it again changes
    nothing; a backend that already holds another state (another lineage) is
    refused. The local file is never deleted: a note beside it
    (<file>.migrated) says where the state went and when.

    \b
    Example:
      rlorinfra state migrate --from prod.state.json -f prod.toml
    """
    from rlorinfra.operations import MigrateOutcome, state_migrate

    result = state_migrate(_open_state(config_path), source, lock_timeout=lock_timeout)
    ident = f"lineage {result.lineage}, serial {result.serial}"
    if result.outcome is MigrateOutcome.ALREADY_THERE:
        click.echo(f"Nothing to do: {result.where} already holds this state ({ident}).")
    else:
        click.echo(f"Migrated {source} to {result.where} ({ident}).")
    click.echo(f"{source} was left in place; {result.note_path} says where the state went.")
    return ExitCode.OK


# ---------------------------------------------------------------- output, show


@click.command("output")
@click.argument("name", required=False, shell_complete=complete_state_job_names)
@file_option
@json_option
@click.option("--raw", is_flag=True, help="Print only NAME's endpoint, for shell scripts.")
def output_cmd(name: str | None, config_path: Path, as_json: bool, raw: bool) -> ExitCode:
    """Job IDs, job names and trainer endpoints; deployment names, states and hot-load buckets.

    \b
    Examples:
      rlorinfra output                      every job and deployment
      rlorinfra output --json               {"NAME": {"job_id", "job_name", "endpoint"},
                                             "deployment.ID": {"deployment_name", "state", ...}}
      rlorinfra output NAME --raw           just NAME's trainer endpoint
      rlorinfra output deployment.ID        one deployment (--raw: its name)
    """
    if raw and (name is None or as_json):
        raise click.UsageError("--raw needs a NAME and cannot be combined with --json.")
    from rlorinfra.operations import resource_of

    store = _open_state(config_path).store
    state = store.read()
    if name is not None:
        return _output_one(resource_outputs(resource_of(state, name, store.backend.describe())[1]), as_json, raw)
    values = state_outputs(state)
    if as_json:
        _echo_json(values)
    elif not values:
        echo_warning(
            f"No outputs found: the state in {store.backend.describe()} manages nothing. Run `rlorinfra apply` first."
        )
    else:
        click.echo(render_outputs_text(state))
    return ExitCode.OK


def _output_one(values: dict[str, str], as_json: bool, raw: bool) -> ExitCode:
    if raw:  # a job's trainer endpoint; a deployment's name (what a client addresses)
        click.echo(values.get("endpoint") or values["deployment_name"])
    elif as_json:
        _echo_json(values)
    else:
        click.echo(render_outputs(values))
    return ExitCode.OK


@click.command("show")
@click.argument("planfile", required=False, type=click.Path(path_type=Path, dir_okay=False))
@file_option
@json_option
def show_cmd(planfile: Path | None, config_path: Path, as_json: bool) -> ExitCode:
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

    store = _open_state(config_path).store
    state = store.read()
    if as_json:
        click.echo(encode_state(state).decode("utf-8"), nl=False)
    else:
        click.echo(render_state(state, store.backend.describe()))
    return ExitCode.OK


def render_state(state: State, where: str) -> str:
    """Every resource in state, like ``terraform show``."""
    if not state.addresses():
        return "The state file is empty. No jobs are managed."
    header = [f"# state: {where} (serial {state.serial}, lineage {state.lineage})"]
    if state.control_plane:
        cp = state.control_plane
        header.append(f"# control plane: {cp.get('url', '?')} (account {cp.get('account_id', '?')})")
    from rlorinfra.operations import listed_addresses

    addresses = listed_addresses(state)
    blocks = [_render_resource(address, record) for address in addresses if (record := state.record(address))]
    return "\n".join(header) + "\n\n" + "\n\n".join(blocks)


def _show_plan(planfile: Path, as_json: bool) -> ExitCode:
    from rlorinfra.plan.document import plan_from_document
    from rlorinfra.plan.planfile import read_plan_file
    from rlorinfra.render.text import render_plan_text

    document = read_plan_file(planfile).document
    plan_from_document(document)  # refuses a damaged document with a clear PlanFileError
    if as_json:
        _echo_json(document)
    else:
        click.echo(render_plan_text(document, color=get_globals().color).rstrip("\n"))
    return ExitCode.OK


# ---------------------------------------------------------------- force-unlock


@click.command("force-unlock")
@click.argument("lock_id")
@file_option
@click.option("--force", is_flag=True, help="Do not ask for confirmation (Terraform's -force).")
def force_unlock_cmd(lock_id: str, config_path: Path, force: bool) -> ExitCode:
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
    from rlorinfra.operations import force_unlock

    force_unlock(_open_state(config_path), lock_id, ClickUI(color=get_globals().color), ask=not force)
    click.echo(
        "rlorinfra state has been successfully unlocked!\n\n"
        "The state has been unlocked, and rlorinfra commands should now be able to "
        "obtain a new lock on the state."
    )
    return ExitCode.OK
