"""Shared CLI plumbing: global options, common option decorators, the exit funnel.

This is the only place that maps ``RlorinfraError`` to exit codes and prints
``Error: ...``. Commands return an int exit code (0 by default) or raise.
"""

from __future__ import annotations

import math
import os
import sys
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import click

from rlorinfra.errors import RlorinfraError

DEFAULT_CONFIG = "rlorinfra.toml"

# The largest number of seconds any option takes (about 31 years). Far above any real
# wait, and far below what time arithmetic (timedelta, thread waits) overflows on.
MAX_SECONDS = 1e9


@dataclass
class Globals:
    """Options given before the command, plus the environment (read only here)."""

    debug: bool = False
    color: bool = False
    env: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_env(cls, *, debug: bool, no_color: bool) -> "Globals":
        """Colour only on a TTY, never with ``--no-color`` or ``NO_COLOR`` set."""
        env = dict(os.environ)
        color = not no_color and not env.get("NO_COLOR") and sys.stdout.isatty()
        return cls(debug=debug, color=color, env=env)


def get_globals(ctx: click.Context | None = None) -> Globals:
    """The ``Globals`` of the running command (a default one outside the group)."""
    ctx = ctx or click.get_current_context()
    root = ctx.find_root()
    if isinstance(root.obj, Globals):
        return root.obj
    root.obj = Globals.from_env(debug=False, no_color=False)
    return root.obj


def file_option(func: Callable[..., Any]) -> Callable[..., Any]:
    """``-f/--file PATH``: the desired-state file (every command takes it)."""
    return click.option(
        "-f",
        "--file",
        "config_path",
        type=click.Path(path_type=Path, dir_okay=False),
        default=DEFAULT_CONFIG,
        show_default=True,
        help="Desired-state TOML file.",
    )(func)


class FiniteFloat(click.FloatRange):
    """A finite float in ``[min, max]``: ``nan``, ``inf`` and out-of-range values are usage errors.

    ``click.FloatRange`` lets ``nan`` through (every comparison with it is false)
    and ``inf`` too when there is no maximum; a timeout of either never ends.
    Help text shows the range as FloatRange does (``x>=0``), leaving out the
    default maximum: ``MAX_SECONDS`` is a safety cap, not a setting.
    ``min_open=True`` makes the minimum itself invalid (``x>0``).
    """

    def __init__(self, min: float | None = 0, max: float | None = MAX_SECONDS, *, min_open: bool = False) -> None:
        super().__init__(min=min, max=None if max == MAX_SECONDS else max, min_open=min_open)
        self.cap = max

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        """The number, or ``self.fail`` with a message click prefixes with the option name."""
        if isinstance(value, bool):
            self.fail(f"{value!r} is not a number.", param, ctx)
        try:
            number = float(value)
        except (TypeError, ValueError):
            self.fail(f"{_shown(value)} is not a valid float.", param, ctx)
        if not math.isfinite(number):
            self.fail(f"{_shown(value)} is not a finite number; give a number of seconds such as 30 or 2.5.",
                      param, ctx)
        if self.cap is not None and number > self.cap:
            self.fail(f"{_shown(value)} is above the maximum of {self.cap:g}.", param, ctx)
        return super().convert(number, param, ctx)  # the minimum, with click's wording

    def __repr__(self) -> str:
        return f"FiniteFloat(min={self.min!r}, max={self.cap!r})"


def _shown(value: Any) -> str:
    # An error is one line: never echo a hostile megabyte-long argument back.
    text = repr(value) if isinstance(value, str) else str(value)
    return text if len(text) <= 40 else text[:36] + "..."


def lock_timeout_option(func: Callable[..., Any]) -> Callable[..., Any]:
    """``--lock-timeout SECONDS``: how long to wait for the state lock (0 = fail at once)."""
    return click.option(
        "--lock-timeout",
        type=FiniteFloat(min=0),
        default=0,
        show_default=True,
        metavar="SECONDS",
        help="Wait this long for the state lock before failing.",
    )(func)


def json_option(func: Callable[..., Any]) -> Callable[..., Any]:
    """``--json``: machine-readable output."""
    return click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")(func)


def load_config(config_path: Path):
    """Load and validate the config, applying environment overrides (CLI reads env)."""
    from rlorinfra.config.load import load_config as _load

    return _load(config_path, env=get_globals().env)


def echo_warning(message: str) -> None:
    """Print a ``Warning:`` line on stderr."""
    color = get_globals().color
    label = click.style("Warning:", fg="yellow", bold=True) if color else "Warning:"
    click.echo(f"{label} {message}", err=True)


def format_error(err: RlorinfraError, color: bool = False) -> str:
    """``Error: <summary>`` then a blank line and the detail paragraph."""
    label = click.style("Error:", fg="red", bold=True) if color else "Error:"
    text = f"{label} {err.summary}"
    if err.detail:
        text += "\n\n" + err.detail.rstrip()
    return text


def _debug_requested(argv: list[str]) -> bool:
    # --debug is a group option, so it stands before the command name.
    for arg in argv:
        if arg == "--debug":
            return True
        if not arg.startswith("-"):
            return False
    return False


def run_cli(group: click.Group, argv: list[str] | None = None) -> int:
    """Run ``group`` and turn its outcome into an exit code (the only place that does)."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = _debug_requested(args)
    color = not os.environ.get("NO_COLOR") and "--no-color" not in args and sys.stderr.isatty()
    try:
        result = group.main(args=args, prog_name="rlorinfra", standalone_mode=False)
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.exceptions.Abort:
        click.echo("\nInterrupted.", err=True)
        return 130
    except click.ClickException as exc:
        # Usage errors exit 1: exit 2 means "changes present" to CI.
        exc.show()
        return 1
    except KeyboardInterrupt:
        click.echo("\nInterrupted.", err=True)
        return 130
    except RlorinfraError as exc:
        if debug:
            traceback.print_exc()
        click.echo(format_error(exc, color), err=True)
        return exc.exit_code
    except Exception as exc:  # noqa: BLE001 - last line of defence: no traceback for users
        if debug:
            traceback.print_exc()
        err = RlorinfraError(
            f"Unexpected internal error: {type(exc).__name__}: {exc}",
            "This is a bug in rlorinfra. Run the same command with `rlorinfra --debug ...` "
            "to see the traceback and report it. Your state file was not changed by this failure "
            "beyond what was already written.",
        )
        click.echo(format_error(err, color), err=True)
        return 1
    return result if isinstance(result, int) else 0
