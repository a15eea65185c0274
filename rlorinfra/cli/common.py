"""Shared CLI plumbing: global options, common option decorators, the exit funnel.

This is the only place that maps ``RlorinfraError`` to exit codes and prints
``Error: ...``. Commands return an int exit code (0 by default) or raise.
"""

from __future__ import annotations

import difflib
import math
import os
import re
import sys
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import click

from rlorinfra.cli.exit_codes import ExitCode, exit_code_for
from rlorinfra.errors import RlorinfraError

if TYPE_CHECKING:
    from rlorinfra.config.model import Config

DEFAULT_CONFIG = "rlorinfra.toml"

# The largest number of seconds any option takes (about 31 years). Far above any real
# wait, and far below what time arithmetic (timedelta, thread waits) overflows on.
MAX_SECONDS = 1e9


def wants_color(*, no_color: bool, env: Mapping[str, str], stream: TextIO) -> bool:
    """The one colour decision: only on a TTY, never with ``--no-color`` or ``NO_COLOR`` set."""
    return not no_color and not env.get("NO_COLOR") and stream.isatty()


@dataclass
class Globals:
    """Options given before the command, plus the environment (read only here)."""

    debug: bool = False
    color: bool = False
    env: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_env(cls, *, debug: bool, no_color: bool) -> Globals:
        """Colour only on a TTY, never with ``--no-color`` or ``NO_COLOR`` set."""
        env = dict(os.environ)
        return cls(debug=debug, color=wants_color(no_color=no_color, env=env, stream=sys.stdout), env=env)


def get_globals(ctx: click.Context | None = None) -> Globals:
    """The ``Globals`` of the running command (a default one outside the group)."""
    ctx = ctx or click.get_current_context()
    root = ctx.find_root()
    if not isinstance(root.obj, Globals):
        root.obj = Globals.from_env(debug=False, no_color=False)
    found: Globals = root.obj
    return found


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
            self.fail(
                f"{_shown(value)} is not a finite number; give a number of seconds such as 30 or 2.5.", param, ctx
            )
        if self.cap is not None and number > self.cap:
            self.fail(f"{_shown(value)} is above the maximum of {self.cap:g}.", param, ctx)
        return super().convert(number, param, ctx)  # the minimum, with click's wording

    def __repr__(self) -> str:
        return f"FiniteFloat(min={self.min!r}, max={self.cap!r})"


# A Go-style duration as Terraform's -lock-timeout takes it: 30s, 2m, 1h, 1h30m, 500ms, 1.5h (and 2d).
_DURATION_PART = r"(\d+(?:\.\d*)?|\.\d+)(ms|s|m|h|d)"
_DURATION_RE = re.compile(rf"(?:{_DURATION_PART})+")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


class Seconds(FiniteFloat):
    """A :class:`FiniteFloat` number of seconds that also takes durations: ``30s``, ``2m``, ``1h``, ``1h30m``.

    A plain number is seconds, as before. ``nan``, ``inf`` and out-of-range values stay
    usage errors: a duration is turned into its finite number of seconds and then checked
    like any other number.
    """

    name = "seconds"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        """Seconds from a number or a duration, then FiniteFloat's checks."""
        if isinstance(value, str):
            text = value.strip().lower()
            if _DURATION_RE.fullmatch(text):
                seconds = sum(float(number) * _UNIT_SECONDS[unit] for number, unit in re.findall(_DURATION_PART, text))
                if self.cap is not None and seconds > self.cap:
                    self.fail(f"{_shown(value)} is above the maximum of {self.cap:g} seconds.", param, ctx)
                return super().convert(seconds, param, ctx)
            try:
                float(text)
            except ValueError:
                self.fail(
                    f"{_shown(value)} is not a number of seconds or a duration such as 30s, 2m or 1h.", param, ctx
                )
        return super().convert(value, param, ctx)

    def __repr__(self) -> str:
        return f"Seconds(min={self.min!r}, max={self.cap!r})"


def _shown(value: Any) -> str:
    # An error is one line: never echo a hostile megabyte-long argument back.
    text = repr(value) if isinstance(value, str) else str(value)
    return text if len(text) <= 40 else text[:36] + "..."


def lock_timeout_option(func: Callable[..., Any]) -> Callable[..., Any]:
    """``--lock-timeout SECONDS``: how long to wait for the state lock (0 = fail at once)."""
    return click.option(
        "--lock-timeout",
        type=Seconds(min=0),
        default=0,
        show_default=True,
        metavar="SECONDS",
        help="Wait this long for the state lock before failing (seconds, or 30s, 2m, 1h).",
    )(func)


def json_option(func: Callable[..., Any]) -> Callable[..., Any]:
    """``--json``: machine-readable output."""
    return click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")(func)


def load_config(config_path: Path) -> Config:
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


# ---------------------------------------------------------------- command-line spellings

# Global options: accepted before or after the command (and in Terraform's single-dash form).
GLOBAL_FLAGS = {"--debug": "--debug", "-debug": "--debug", "--no-color": "--no-color", "-no-color": "--no-color"}


class SuggestingGroup(click.Group):
    """A click group that answers a mistyped command with "Did you mean ...?"."""

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        name = args[0] if args else ""
        if not ctx.resilient_parsing and name and not name.startswith("-") and self.get_command(ctx, name) is None:
            match = difflib.get_close_matches(name, self.list_commands(ctx), n=1)
            hint = f" Did you mean {match[0]!r}?" if match else ""
            ctx.fail(f"No such command {name!r}.{hint}")
        return super().resolve_command(ctx, args)


def _options_of(command: click.Command) -> dict[str, click.Option]:
    """Every spelling of ``command``'s options (``-f``, ``--file``, ``--no-refresh``...)."""
    found: dict[str, click.Option] = {}
    for param in command.params:
        if isinstance(param, click.Option):
            for spelling in (*param.opts, *param.secondary_opts):
                found[spelling] = param
    return found


def _takes_value(option: click.Option | None) -> bool:
    return option is not None and not option.is_flag and not option.count


def _boolean_spelling(token: str) -> str:
    """Terraform's ``-refresh=false`` (or ``--health-check=true``) as click's ``--no-refresh`` / ``--refresh``."""
    name, eq, value = token.lstrip("-").partition("=")
    if eq and name in ("refresh", "health-check") and value.lower() in ("true", "false"):
        return f"--{name}" if value.lower() == "true" else f"--no-{name}"
    return token


def normalize_argv(group: click.Group, args: list[str]) -> list[str]:
    """``args`` as click expects them: global options first, Terraform's spellings made long.

    * ``--debug``/``--no-color`` (or ``-debug``/``-no-color``) anywhere before ``--`` move
      to the front, where the group option is parsed.
    * A single-dash token whose name is a long option of the command it belongs to becomes
      the double-dash option, keeping ``=VALUE``: ``-auto-approve``, ``-out=FILE``,
      ``-target NAME``, ``-lock-timeout=30s``... Short options (``-f``, ``-h``), option
      values, unknown names and everything after ``--`` are left alone.
    """
    front: list[str] = []
    rest: list[str] = []
    command: click.Command = group
    options = _options_of(command)
    value_next = False
    for index, token in enumerate(args):
        if token == "--":
            rest.extend(args[index:])
            break
        if value_next:  # the value of the option before: never an option itself
            rest.append(token)
            value_next = False
            continue
        if token in GLOBAL_FLAGS:
            front.append(GLOBAL_FLAGS[token])
            continue
        if token.startswith("-") and len(token) > 1:
            token = _boolean_spelling(token)
            name, eq, _ = token.partition("=")
            if not name.startswith("--") and len(name) > 2:
                long_name = "-" + name
                if long_name in options or long_name == "--help":
                    token = "-" + token
                    name = long_name
            value_next = not eq and _takes_value(options.get(name))
            rest.append(token)
            continue
        if isinstance(command, click.Group):
            try:
                sub = command.get_command(click.Context(command, info_name=command.name), token)
            except Exception:  # noqa: BLE001 - leave resolution (and its error) to click
                sub = None
            if sub is not None:
                command = sub
                options = _options_of(command)
        rest.append(token)
    return front + rest


# ---------------------------------------------------------------- shell completion


def complete_job_names(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[Any]:
    """Shell completion: the job names of the ``-f`` config (default ``rlorinfra.toml``).

    Quiet by design: a missing or broken config, or any other error, completes nothing.
    """
    from click.shell_completion import CompletionItem

    try:
        path = ctx.params.get("config_path") or Path(DEFAULT_CONFIG)
        from rlorinfra.config.load import load_config as _load

        names = sorted(_load(Path(path), env=dict(os.environ)).jobs)
    except Exception:  # noqa: BLE001 - completion must never print or fail
        return []
    return [CompletionItem(name) for name in names if name.startswith(incomplete)]


def complete_state_job_names(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[Any]:
    """Shell completion for commands on state: the config's job names and the state's (deployments as addresses).

    A job removed from the config is still in state until destroyed or ``state rm``-ed,
    so both are offered. Quiet like :func:`complete_job_names`.
    """
    from click.shell_completion import CompletionItem

    names = {item.value for item in complete_job_names(ctx, param, incomplete)}
    try:
        from rlorinfra.config.load import load_config as _load
        from rlorinfra.config.model import StateBackendKind
        from rlorinfra.state.backends.local import LocalBackend

        path = ctx.params.get("config_path") or Path(DEFAULT_CONFIG)
        settings = _load(Path(path), env=dict(os.environ)).state_settings
        # Only a local state is read for completion: a shared backend would mean a connection per <TAB>.
        if settings.backend is StateBackendKind.LOCAL:
            state, _ = LocalBackend(settings.path).read()
            names |= set(state.jobs) | {f"deployment.{name}" for name in state.deployments}
    except Exception:  # noqa: BLE001 - completion must never print or fail
        pass
    return [CompletionItem(name) for name in sorted(names) if name.startswith(incomplete)]


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
    try:
        args = normalize_argv(group, args)
    except Exception:  # noqa: BLE001 - never worse than click's own parsing of the raw argv
        pass
    debug = _debug_requested(args)
    # Errors go to stderr, and may come before the group parsed --no-color.
    color = wants_color(no_color="--no-color" in args, env=os.environ, stream=sys.stderr)
    try:
        result = group.main(args=args, prog_name="rlorinfra", standalone_mode=False)
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except (click.exceptions.Abort, KeyboardInterrupt):
        click.echo("\nInterrupted.", err=True)
        return ExitCode.INTERRUPTED
    except click.ClickException as exc:
        # Usage errors exit 1: exit 2 means "changes present" to CI.
        exc.show()
        return ExitCode.ERROR
    except RlorinfraError as exc:
        if debug:
            traceback.print_exc()
        click.echo(format_error(exc, color), err=True)
        return exit_code_for(exc)
    except Exception as exc:  # noqa: BLE001 - last line of defence: no traceback for users
        if debug:
            traceback.print_exc()
        err = RlorinfraError(
            f"Unexpected internal error: {type(exc).__name__}: {exc}",
            "This is a bug in rlorinfra. Run the same command with `rlorinfra --debug ...` "
            "to see the traceback and report it. Your state was not changed by this failure "
            "beyond what was already written.",
        )
        click.echo(format_error(err, color), err=True)
        return ExitCode.ERROR
    return result if isinstance(result, int) else ExitCode.OK
