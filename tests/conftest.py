"""Shared fixtures: run the CLI in-process through the real exit funnel."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner


@dataclass
class CliResult:
    """Outcome of one CLI run: exit code and both streams as text."""

    exit_code: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


def run_cli(
    args: list[str], *, input: str | None = None, env: dict[str, str] | None = None, cwd: Path | None = None
) -> CliResult:
    """Invoke ``rlorinfra ARGS`` in-process via ``run_cli`` (exit codes as a user sees them)."""
    from rlorinfra.cli.common import run_cli as funnel
    from rlorinfra.cli.main import cli

    runner = CliRunner()
    old = os.getcwd()
    if cwd is not None:
        os.chdir(cwd)
    try:
        with runner.isolation(input=input, env=env, color=False) as streams:
            code = funnel(cli, [str(a) for a in args])
            out, err = streams[0].getvalue(), streams[1].getvalue()
    finally:
        os.chdir(old)
    return CliResult(code, out.decode(), err.decode())


@pytest.fixture
def cli():
    """The ``run_cli`` helper as a fixture."""
    return run_cli
