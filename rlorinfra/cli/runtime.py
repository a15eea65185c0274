"""Glue between click commands and ``rlorinfra.operations``: builds the workspace
(config + API key from the environment + debug tracing) and confirms plans.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from rlorinfra.cli.common import echo_warning, get_globals, load_config
from rlorinfra.errors import RlorinfraError

CONFIRM_PROMPT = "Do you want to perform these actions? Only 'yes' will be accepted"


def insecure_option(func):
    """``--insecure``: allow sending the API key over plain http to a non-loopback host."""
    return click.option(
        "--insecure", is_flag=True, help="Allow plain http:// to a non-loopback control plane."
    )(func)


def open_workspace(config_path: Path, insecure: bool = False):
    """Load the config and build a Workspace; the API key is read from the environment here."""
    from rlorinfra.operations import Workspace

    config = load_config(config_path)
    for warning in config.warnings:
        echo_warning(warning)
    g = get_globals()
    api_key = g.env.get(config.control_plane.api_key_env) or None
    trace = (lambda line: click.echo(f"[http] {line}", err=True)) if g.debug else None
    return Workspace(config=config, api_key=api_key, insecure=insecure, trace=trace, notify=announce_retry)


def announce_retry(line: str) -> None:
    """Say on stderr that the control plane is being retried, so a wait never looks hung."""
    click.echo(line, err=True)


def stdin_is_tty() -> bool:
    """Whether a person can answer a prompt (patched in tests)."""
    return sys.stdin.isatty()


def confirm_or_fail(action: str = "apply") -> None:
    """Ask for 'yes'; refuse without a TTY; raise on anything but 'yes'."""
    if not stdin_is_tty():
        raise RlorinfraError(
            f"No approval for {action}: standard input is not a terminal",
            f"rlorinfra {action} asks for confirmation before changing jobs. In scripts and CI "
            f"pass --auto-approve, or save a plan with `rlorinfra plan --out PLANFILE` and run "
            f"`rlorinfra apply PLANFILE`.",
        )
    click.echo(f"\n{CONFIRM_PROMPT}")
    answer = click.prompt("  Enter a value", default="", show_default=False)
    if answer.strip() != "yes":
        raise RlorinfraError(f"{action.capitalize()} cancelled.", "Nothing was changed.")
