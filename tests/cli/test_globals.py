"""Global options: colour only on a TTY, NO_COLOR and --no-color honoured; exit funnel."""

from __future__ import annotations

import sys

import pytest

from rlorinfra.cli.common import Globals
from tests.conftest import run_cli


@pytest.mark.parametrize(
    "tty,no_color_flag,env,expected",
    [
        (True, False, {}, True),
        (False, False, {}, False),
        (True, True, {}, False),
        (True, False, {"NO_COLOR": "1"}, False),
    ],
)
def test_colour_only_on_a_tty_without_opt_outs(monkeypatch, tty, no_color_flag, env, expected):
    monkeypatch.setattr(sys.stdout, "isatty", lambda: tty, raising=False)
    monkeypatch.delenv("NO_COLOR", raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert Globals.from_env(debug=False, no_color=no_color_flag).color is expected


def test_usage_errors_exit_1_never_2(tmp_path):
    for args in (["plan", "--bogus"], ["bogus"], ["apply", "--parallelism", "0"], ["state", "show"]):
        result = run_cli(args, cwd=tmp_path)
        assert result.exit_code == 1, (args, result.output)
        assert "Traceback" not in result.output


def test_version_and_help(tmp_path):
    assert run_cli(["--version"]).stdout.startswith("rlorinfra, version ")
    result = run_cli(["--help"])
    assert result.exit_code == 0 and "plan" in result.stdout and "Examples" in result.stdout


def test_unexpected_errors_have_no_traceback_unless_debug(tmp_path, monkeypatch):
    import rlorinfra.cli.config_cmds as config_cmds

    def boom(*a, **k):
        raise RuntimeError("kaboom")

    (tmp_path / "rlorinfra.toml").write_text("")
    monkeypatch.setattr("rlorinfra.config.load.validate_config", boom)
    result = run_cli(["validate"], cwd=tmp_path)
    assert result.exit_code == 1
    assert "Unexpected internal error" in result.stderr and "Traceback" not in result.stderr
    debug = run_cli(["--debug", "validate"], cwd=tmp_path)
    assert debug.exit_code == 1 and "Traceback" in debug.stderr
    assert config_cmds  # imported so the patch target module is loaded
