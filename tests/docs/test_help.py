"""Every command's --help works and shows an example; docs/commands.md matches the CLI;
shell completion scripts are produced for bash, zsh and fish."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.conftest import run_cli
from tests.docs.helptext import COMMANDS_DOC, command_paths, documented_commands, help_text, refreshed

PATHS = command_paths()


@pytest.mark.parametrize("path", PATHS, ids=lambda p: " ".join(p) or "rlorinfra")
def test_help_exits_0_and_shows_an_example(path):
    result = run_cli([*path, "--help"])
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("Usage: rlorinfra")
    assert "Example" in result.stdout, f"`rlorinfra {' '.join(path)} --help` shows no example"


def test_short_help_option_works_everywhere():
    for path in PATHS:
        assert run_cli([*path, "-h"]).exit_code == 0


def test_commands_reference_documents_every_command():
    documented = documented_commands(COMMANDS_DOC.read_text())
    expected = [" ".join(("rlorinfra", *path)) for path in PATHS]
    assert sorted(documented) == sorted(expected)


def test_commands_reference_help_blocks_match_the_cli():
    text = COMMANDS_DOC.read_text()
    assert refreshed(text) == text, "docs/commands.md is out of date: run `python -m tests.docs.helptext --write`"


def test_help_text_is_what_the_cli_prints_at_80_columns():
    env = {**os.environ, "COLUMNS": "80"}
    out = subprocess.run(
        [sys.executable, "-m", "rlorinfra", "plan", "--help"], capture_output=True, text=True, env=env, check=True
    ).stdout
    assert out == help_text(("plan",))


@pytest.mark.parametrize(
    "shell,marker",
    [
        ("bash", "complete -o nosort -F _rlorinfra_completion rlorinfra"),
        ("zsh", "#compdef rlorinfra"),
        ("fish", "complete --no-files --command rlorinfra"),
    ],
)
def test_completion_script_for_each_shell(shell, marker):
    env = {**os.environ, "_RLORINFRA_COMPLETE": f"{shell}_source"}
    result = subprocess.run([sys.executable, "-m", "rlorinfra"], capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr
    assert marker in result.stdout


def test_completion_completes_commands_and_options():
    env = {
        **os.environ,
        "_RLORINFRA_COMPLETE": "bash_complete",
        "COMP_WORDS": "rlorinfra plan --det",
        "COMP_CWORD": "2",
    }
    result = subprocess.run([sys.executable, "-m", "rlorinfra"], capture_output=True, text=True, env=env)
    assert result.returncode == 0
    assert result.stdout.split() == ["plain,--detailed-exitcode"]
