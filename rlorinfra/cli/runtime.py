"""Glue between click commands and ``rlorinfra.operations``: builds the workspace
(config + API key from the environment + debug tracing) and asks for 'yes'.
"""

from __future__ import annotations

import shlex
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from rlorinfra.cli.common import echo_warning, get_globals, load_config

if TYPE_CHECKING:
    from rlorinfra.operations.workspace import Workspace
    from rlorinfra.state.model import State


def insecure_option(func: Callable[..., Any]) -> Callable[..., Any]:
    """``--insecure``: allow sending the API key over plain http to a non-loopback host."""
    return click.option("--insecure", is_flag=True, help="Allow plain http:// to a non-loopback control plane.")(func)


def open_workspace(config_path: Path, insecure: bool = False, *, show_warnings: bool = True) -> Workspace:
    """Load the config and build the command's Workspace; the API key is read from the environment here.

    Commands that only read or edit state do not repeat the config's warnings
    (``show_warnings=False``): those are about planning.
    """
    from rlorinfra.cli.cost_cmds import with_cost_overrides
    from rlorinfra.operations.workspace import Workspace

    config = with_cost_overrides(load_config(config_path))  # --pricing / --max-hourly-delta, when given
    for warning in config.warnings if show_warnings else ():
        echo_warning(warning)
    g = get_globals()
    api_key = g.env.get(config.control_plane.api_key_env) or None
    trace = (lambda line: click.echo(f"[http] {line}", err=True)) if g.debug else None
    return Workspace(
        config=config, api_key=api_key, insecure=insecure, trace=trace, notify=announce_retry, environ=g.env
    )


def announce_retry(line: str) -> None:
    """Say on stderr that the control plane is being retried, so a wait never looks hung.

    Above a live TTY view, not through it (its redraw would be left off by a line).
    """
    from rlorinfra.cli.views import echo_above_view

    echo_above_view(line, err=True)


def stdin_is_tty() -> bool:
    """Whether a person can answer a prompt (patched in tests)."""
    return sys.stdin.isatty()


def ask_for_yes(question: str, explanation: str = "") -> bool:
    """Print ``question`` (and ``explanation``), read a value; True only for ``yes``.

    End of input (Ctrl-D) is a "no", not an interrupt; Ctrl-C still interrupts (exit 130).
    """
    click.echo(f"\n{question}")
    if explanation:
        click.echo(explanation)
    try:
        answer = click.prompt("  Enter a value", default="", show_default=False)
    except click.exceptions.Abort as exc:
        # click turns both Ctrl-C and EOF into Abort; only the former is an interrupt.
        if isinstance(exc.__context__, KeyboardInterrupt):
            raise KeyboardInterrupt from None
        click.echo("")  # the prompt line had no newline of its own
        return False
    return answer.strip() == "yes"


def emulator_note(state: State | None, config_path: Path | None = None) -> str:
    """After a successful apply on the embedded emulator: which jobs now run there and how to
    destroy them (``""`` when the control plane is not the embedded emulator or nothing runs).

    ``config_path`` defaults to the running command's ``-f``. The state's recorded control
    plane says whether it is the embedded emulator (``url = "local"``).
    """
    from rlorinfra.config.model import LOCAL_URL
    from rlorinfra.state.model import PHASE_STOPPED

    if state is None or (state.control_plane or {}).get("url") != LOCAL_URL:
        return ""
    running = sorted(name for name, record in state.jobs.items() if record.phase != PHASE_STOPPED)
    running += sorted(f"deployment.{name}" for name in state.deployments)
    noun = "resources" if state.deployments else "jobs"
    if not running:
        return ""
    if config_path is None:
        ctx = click.get_current_context(silent=True)
        config_path = (ctx.params.get("config_path") if ctx else None) or Path("rlorinfra.toml")
    config_path = Path(config_path)
    flag = "" if str(config_path) == "rlorinfra.toml" else f" -f {shlex.quote(str(config_path))}"
    shown = ", ".join(running[:10]) + (f" and {len(running) - 10} more" if len(running) > 10 else "")
    return (
        f"The {noun} above ({shown}) are running on the embedded emulator (.rlorinfra/ beside "
        f"{config_path}). Destroy them with: rlorinfra destroy{flag}"
    )
