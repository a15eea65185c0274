"""Reliability suite fixtures; prints the recorded figures at the end of the run."""

from __future__ import annotations

import json
import time

from tests.reliability.helpers import FIGURES_DIR

_LOADED = time.time() - 1  # only figures written by this run are printed


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    """Print the figures the reliability tests recorded (pasted into docs/reliability.md)."""
    if not FIGURES_DIR.exists():
        return
    files = sorted(p for p in FIGURES_DIR.glob("*.json") if p.stat().st_mtime >= _LOADED)
    if not files:
        return
    terminalreporter.section("reliability figures")
    for path in files:
        terminalreporter.write_line(f"{path.stem}: {json.dumps(json.loads(path.read_text()), sort_keys=True)}")
