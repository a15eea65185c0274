"""The ``rlorinfra`` command group and the exit-code funnel.

Commands live in sibling modules and are imported only when invoked, so that
``rlorinfra --version`` and ``rlorinfra validate`` start fast (nothing imports
httpx, deepdiff or sqlite3 unless the command needs it).

Exit codes (DESIGN.md §1): 0 success, 1 any error (usage errors included: 2 is
reserved for ``plan --detailed-exitcode``), 2 changes present, 130 interrupted.
"""

from __future__ import annotations

import importlib
import os
import sys

import click

from rlorinfra import __version__
from rlorinfra.cli.common import SuggestingGroup

# command name -> "module:attribute" under rlorinfra.cli
COMMANDS: dict[str, str] = {
    "init": "config_cmds:init_cmd",
    "validate": "config_cmds:validate_cmd",
    "plan": "plan_cmds:plan_cmd",
    "apply": "apply_cmds:apply_cmd",
    "destroy": "apply_cmds:destroy_cmd",
    "import": "apply_cmds:import_cmd",
    "state": "state_cmds:state_group",
    "output": "state_cmds:output_cmd",
    "show": "state_cmds:show_cmd",
    "graph": "graph_cmds:graph_cmd",
    "force-unlock": "state_cmds:force_unlock_cmd",
    "control-plane": "controlplane_cmds:control_plane_group",
    "cost": "cost_cmds:cost_cmd",
    "watch": "watch_cmds:watch_cmd",
}

EPILOG = """\b
Examples:
  rlorinfra init                      write a starter rlorinfra.toml
  rlorinfra plan                      show what apply would change
  rlorinfra apply --auto-approve      create/resume/stop/delete jobs to match
  rlorinfra plan --detailed-exitcode  exit 2 when the live world drifted (for CI)

\b
Run `rlorinfra COMMAND --help` for a command's options and examples.
Tab completion: eval "$(_RLORINFRA_COMPLETE=bash_source rlorinfra)"
(zsh_source, fish_source for other shells; see docs/commands.md).
"""


class LazyGroup(SuggestingGroup):
    """A click group whose subcommands are imported on first use (a typo gets "Did you mean")."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = COMMANDS.get(cmd_name)
        if target is None:
            return None
        module_name, attr = target.split(":")
        module = importlib.import_module(f"rlorinfra.cli.{module_name}")
        command: click.Command = getattr(module, attr)
        return command


@click.group(cls=LazyGroup, epilog=EPILOG, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="rlorinfra")
@click.option("--debug", is_flag=True, help="Show tracebacks and HTTP traces on stderr (before or after the command).")
@click.option(
    "--no-color", is_flag=True, help="Never colour output (NO_COLOR is honoured too; before or after the command)."
)
@click.pass_context
def cli(ctx: click.Context, debug: bool, no_color: bool) -> None:
    """rlorinfra: Terraform for Fireworks RLOR trainer jobs.

    Declare trainer jobs in a TOML file, see how the live control plane differs
    with `plan`, and converge it with `apply`. Job IDs and trainer endpoints are
    recorded in a locked state file.

    Terraform's single-dash spellings work too: -auto-approve, -out=FILE,
    -target=NAME, -replace=NAME, -lock-timeout=30s, -detailed-exitcode,
    -refresh-only, -parallelism=N, -json, -no-color.
    """
    from rlorinfra.cli.common import Globals

    ctx.obj = Globals.from_env(debug=debug, no_color=no_color)


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: run the CLI and funnel every outcome into an exit code."""
    from rlorinfra.cli.common import run_cli

    code = run_cli(cli, argv)
    # Skip interpreter teardown: with thousands of jobs in memory it costs ~75 ms
    # (a tenth of a 1,000-job plan). Nothing is lost: state and plan files are
    # fsynced and closed before commands return, the lock is released by its
    # context manager, and the standard streams are flushed right here.
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # closed or broken pipe: nothing more to say
            pass
    os._exit(code)


if __name__ == "__main__":  # pragma: no cover
    main()
