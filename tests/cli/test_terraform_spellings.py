"""Terraform habits on the command line (DESIGN.md §1): single-dash spellings of the long
options, global options before or after the command, durations for --lock-timeout, and
"Did you mean" for a mistyped command. Every case runs through the real exit funnel."""

from __future__ import annotations

import json
from pathlib import Path

import click
import pytest

from rlorinfra.cli.common import Seconds, normalize_argv
from rlorinfra.cli.main import cli as root
from tests.conftest import run_cli


@pytest.fixture
def applied(folder: Path) -> Path:
    result = run_cli(["apply", "--auto-approve"], cwd=folder)
    assert result.exit_code == 0, result.output
    return folder


# ------------------------------------------------------------------ the rewriting itself


@pytest.mark.parametrize(
    "argv,expected",
    [
        (["apply", "-auto-approve"], ["apply", "--auto-approve"]),
        (["plan", "-out=p.plan"], ["plan", "--out=p.plan"]),
        (["plan", "-out", "p.plan"], ["plan", "--out", "p.plan"]),
        (["plan", "-target=a", "-replace=b"], ["plan", "--target=a", "--replace=b"]),
        (
            ["plan", "-detailed-exitcode", "-refresh-only", "-json"],
            ["plan", "--detailed-exitcode", "--refresh-only", "--json"],
        ),
        (["plan", "-lock-timeout=30s"], ["plan", "--lock-timeout=30s"]),
        (["apply", "-parallelism=4", "-no-refresh"], ["apply", "--parallelism=4", "--no-refresh"]),
        (["force-unlock", "-force", "ID"], ["force-unlock", "--force", "ID"]),
        (["state", "rm", "-lock-timeout", "1m", "a"], ["state", "rm", "--lock-timeout", "1m", "a"]),
        # globals move to the front, in either spelling
        (["plan", "-no-color", "--debug"], ["--no-color", "--debug", "plan"]),
        (["plan", "--no-color"], ["--no-color", "plan"]),
        (["-no-color", "plan"], ["--no-color", "plan"]),
        (["-version"], ["--version"]),
    ],
)
def test_single_dash_long_options_become_double_dash(argv, expected):
    assert normalize_argv(root, argv) == expected


@pytest.mark.parametrize(
    "argv",
    [
        ["plan", "-f", "x.toml"],  # a real short option
        ["plan", "-h"],
        ["plan", "-f", "-json"],  # the value of -f, however it looks
        ["plan", "--target", "-detailed-exitcode"],  # the value of --target
        ["plan", "--lock-timeout", "-1"],  # a negative number stays a (bad) value
        ["plan", "-bogus"],  # not an option of plan: click says so
        ["apply", "-destroy"],  # --destroy is plan's, not apply's
        ["state", "show", "--", "-json"],  # after --, an argument
        ["state", "show", "--", "--no-color"],
    ],
)
def test_other_tokens_are_left_alone(argv):
    assert normalize_argv(root, argv) == argv


# ------------------------------------------------------------------ every alias, end to end


def test_auto_approve_and_parallelism(folder):
    result = run_cli(["apply", "-auto-approve", "-parallelism=3"], cwd=folder)
    assert result.exit_code == 0, result.output
    assert "Apply complete! Resources: 2 created" in result.stdout
    bad = run_cli(["apply", "-auto-approve", "-parallelism=0"], cwd=folder)
    assert bad.exit_code == 1 and "--parallelism" in bad.stderr


@pytest.mark.parametrize("spelling", [["-out=saved.plan"], ["-out", "saved.plan"]])
def test_out(folder, spelling):
    result = run_cli(["plan", *spelling], cwd=folder)
    assert result.exit_code == 0, result.output
    assert (folder / "saved.plan").exists()
    assert "rlorinfra apply saved.plan" in result.stdout


def test_target(folder):
    result = run_cli(["plan", "-target=grpo-policy-trainer", "-json"], cwd=folder)
    assert result.exit_code == 0, result.output
    assert "Resource targeting is in effect" in result.stderr
    names = {change["name"] for change in json.loads(result.stdout)["changes"] if change["action"] != "noop"}
    assert names == {"grpo-policy-trainer"}


def test_replace(applied):
    result = run_cli(["plan", "-replace=grpo-policy-trainer", "-json"], cwd=applied)
    assert result.exit_code == 0, result.output
    actions = {c["name"]: c["action"] for c in json.loads(result.stdout)["changes"]}
    assert actions["grpo-policy-trainer"] == "replace"


def test_detailed_exitcode(folder):
    assert run_cli(["plan", "-detailed-exitcode"], cwd=folder).exit_code == 2


def test_refresh_only(applied):
    result = run_cli(["plan", "-refresh-only", "-detailed-exitcode"], cwd=applied)
    assert result.exit_code == 0, result.output
    assert "still match what the state file recorded" in result.stdout


def test_json(folder):
    result = run_cli(["plan", "-json"], cwd=folder)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["format_version"] == 2


@pytest.mark.parametrize("value", ["30s", "30", "2m", "1h", "0.5s", "1h30m"])
def test_lock_timeout_takes_durations(folder, value):
    for argv in (["plan", f"-lock-timeout={value}"], ["plan", "--lock-timeout", value]):
        result = run_cli(argv, cwd=folder)
        assert result.exit_code == 0, (argv, result.output)


@pytest.mark.parametrize("value", ["nan", "inf", "-1", "30x", "s", "1e400", "99999999999h"])
def test_lock_timeout_refuses_what_never_ends_or_is_not_a_duration(folder, value):
    result = run_cli(["plan", f"-lock-timeout={value}"], cwd=folder)
    assert result.exit_code == 1, result.output
    assert "--lock-timeout" in result.stderr and "Traceback" not in result.output


@pytest.mark.parametrize(
    "text,seconds",
    [
        ("30s", 30),
        ("2m", 120),
        ("1h", 3600),
        ("1h30m", 5400),
        ("500ms", 0.5),
        ("2d", 172800),
        ("12", 12),
        ("2.5", 2.5),
        (" 2M ", 120),
    ],
)
def test_seconds_type_converts_durations(text, seconds):
    assert Seconds(min=0).convert(text, None, None) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["nan", "inf", "-inf", "nans", "infh", "1e400", "h", ""])
def test_seconds_type_refuses_non_finite(text):
    with pytest.raises(click.BadParameter):
        Seconds(min=0).convert(text, None, None)


def test_timeouts_of_apply_take_durations_too():
    from rlorinfra.cli.apply_cmds import apply_cmd

    ctx = apply_cmd.make_context("apply", ["--timeout", "15m", "--pending-timeout", "2h", "--lock-timeout", "30s"])
    assert (ctx.params["timeout"], ctx.params["pending_timeout"], ctx.params["lock_timeout"]) == (900, 7200, 30)


def test_help_single_dash(folder):
    result = run_cli(["plan", "-help"], cwd=folder)
    assert result.exit_code == 0 and result.stdout.startswith("Usage: rlorinfra plan")


def test_an_unknown_single_dash_option_is_still_a_usage_error(folder):
    result = run_cli(["plan", "-bogus"], cwd=folder)
    assert result.exit_code == 1 and "No such option" in result.stderr


# ------------------------------------------------------------------ global options in both positions


@pytest.fixture
def seen_globals(monkeypatch):
    """Records the ``debug``/``no_color`` the root command was given."""
    from rlorinfra.cli import common

    seen: list[dict] = []
    original = common.Globals.from_env.__func__

    def spy(cls, *, debug, no_color):
        seen.append({"debug": debug, "no_color": no_color})
        return original(cls, debug=debug, no_color=no_color)

    monkeypatch.setattr(common.Globals, "from_env", classmethod(spy))
    return seen


@pytest.mark.parametrize(
    "argv",
    [
        ["--no-color", "validate"],
        ["validate", "--no-color"],
        ["validate", "-no-color"],
        ["-no-color", "validate"],
        ["validate", "-f", "rlorinfra.toml", "--no-color"],
    ],
)
def test_no_color_before_or_after_the_command(folder, seen_globals, argv):
    result = run_cli(argv, cwd=folder)
    assert result.exit_code == 0, result.output
    assert seen_globals[-1] == {"debug": False, "no_color": True}


@pytest.mark.parametrize("argv", [["--debug", "validate"], ["validate", "--debug"], ["validate", "-debug"]])
def test_debug_before_or_after_the_command(folder, seen_globals, monkeypatch, argv):
    assert run_cli(argv, cwd=folder).exit_code == 0
    assert seen_globals[-1]["debug"] is True

    def boom(*a, **k):
        raise RuntimeError("kaboom")

    monkeypatch.setattr("rlorinfra.config.load.validate_config", boom)
    result = run_cli(argv, cwd=folder)
    assert result.exit_code == 1 and "Traceback" in result.stderr  # --debug shows tracebacks wherever it is


def test_global_options_after_a_subgroup_command(folder, seen_globals):
    result = run_cli(["state", "list", "--no-color", "--debug"], cwd=folder)
    assert result.exit_code == 0, result.output
    assert seen_globals[-1] == {"debug": True, "no_color": True}


def test_no_color_does_not_colour_even_on_a_tty(folder, monkeypatch):
    """The funnel's own Error: label too: -no-color after the command still turns it off."""
    import sys

    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)
    (folder / "rlorinfra.toml").write_text("[jobs.x]\nlora_rank = -1\n")
    result = run_cli(["validate", "-no-color"], cwd=folder)
    assert result.exit_code == 1 and "\x1b[" not in result.output


# ------------------------------------------------------------------ did you mean


@pytest.mark.parametrize(
    "argv,wrong,right",
    [
        (["plon"], "plon", "plan"),
        (["aply"], "aply", "apply"),
        (["state", "lst"], "lst", "list"),
        (["destory"], "destory", "destroy"),
    ],
)
def test_a_mistyped_command_gets_did_you_mean(tmp_path, argv, wrong, right):
    result = run_cli(argv, cwd=tmp_path)
    assert result.exit_code == 1
    assert f"Error: No such command '{wrong}'. Did you mean '{right}'?" in result.stderr


def test_a_command_nothing_like_any_other_gets_no_suggestion(tmp_path):
    result = run_cli(["xyzzy"], cwd=tmp_path)
    assert result.exit_code == 1
    assert "Error: No such command 'xyzzy'." in result.stderr and "Did you mean" not in result.stderr


@pytest.mark.parametrize(
    "value,message",
    [
        ("soon", "'soon' is not a number of seconds or a duration such as 30s, 2m or 1h."),
        ("99999999999h", "'99999999999h' is above the maximum of 1e+09 seconds."),
        ("nan", "'nan' is not a finite number"),
    ],
)
def test_bad_durations_are_named_as_typed(folder, value, message):
    result = run_cli(["plan", f"-lock-timeout={value}"], cwd=folder)
    assert result.exit_code == 1
    assert f"Invalid value for '--lock-timeout': {message}" in result.stderr
