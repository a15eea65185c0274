"""Exit codes: one IntEnum in the CLI, one mapping from errors; core errors carry none."""

from __future__ import annotations

import pytest

from rlorinfra.cli.exit_codes import ExitCode, exit_code_for
from rlorinfra.errors import ApiError, ApplyError, ConfigError, InterruptedRun, RlorinfraError
from tests.conftest import run_cli


def test_the_codes_are_those_of_the_design():
    assert [int(c) for c in ExitCode] == [0, 1, 2, 130]


@pytest.mark.parametrize(
    "error,code",
    [
        (InterruptedRun("x"), ExitCode.INTERRUPTED),
        (KeyboardInterrupt(), ExitCode.INTERRUPTED),
        (ApplyError("x"), ExitCode.ERROR),
        (ConfigError("x"), ExitCode.ERROR),
        (ApiError("x"), ExitCode.ERROR),
    ],
)
def test_errors_map_to_codes_in_the_cli_only(error, code):
    assert exit_code_for(error) is code
    assert not hasattr(RlorinfraError, "exit_code")


def test_refused_confirmation_exits_with_error_and_changes_nothing(folder, monkeypatch):
    monkeypatch.setattr("rlorinfra.cli.runtime.stdin_is_tty", lambda: True)
    result = run_cli(["apply"], cwd=folder, input="no\n")
    assert result.exit_code == ExitCode.ERROR, result.output
    assert "Error: Apply cancelled." in result.stderr
    state = folder / "rlorinfra.state.json"
    assert not state.exists() or "job_id" not in state.read_text()


def test_detailed_exitcode_says_changes_then_ok(folder):
    assert run_cli(["plan", "--detailed-exitcode"], cwd=folder).exit_code == ExitCode.CHANGES
    assert run_cli(["apply", "--auto-approve", "--no-wait"], cwd=folder).exit_code == ExitCode.OK
    assert run_cli(["plan", "--detailed-exitcode", "--refresh-only"], cwd=folder).exit_code == ExitCode.OK
