"""Fixtures shared by the CLI tests: a folder holding the quickstart example."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def write_quickstart(folder: Path) -> Path:
    """The quickstart example with fast emulator provisioning, as ``rlorinfra.toml``."""
    text = (EXAMPLES / "quickstart.toml").read_text()
    text = re.sub(r"(?m)^provision_seconds\s*=\s*[0-9.]+", "provision_seconds = 0.1", text)
    path = folder / "rlorinfra.toml"
    path.write_text(text)
    return path


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """A temporary folder with the quickstart example as its ``rlorinfra.toml``."""
    write_quickstart(tmp_path)
    return tmp_path
