"""Shared helpers for the reliability suite: subprocess runs, folder snapshots,
invariant checks and the figures recorded for docs/reliability.md.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

from tests.e2e.conftest import API_KEY, KEY_ENV

HERE = Path(__file__).resolve().parent
KILLER = HERE / "killer.py"
REPO = HERE.parent.parent
FIGURES_DIR = Path(os.environ.get("RLOR_RELIABILITY_FIGURES", Path(tempfile.gettempdir()) / "rlorinfra-reliability"))


def record_figures(name: str, figures: dict) -> None:
    """Save one test's figures as JSON (the terminal summary prints them all)."""
    FIGURES_DIR.mkdir(parents=True, exist_ok=True)
    (FIGURES_DIR / f"{name}.json").write_text(json.dumps(figures, indent=2, sort_keys=True) + "\n")


def subprocess_env(**extra: str) -> dict[str, str]:
    """The environment of a child rlorinfra: the test key, no colour, the repo importable."""
    path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, KEY_ENV: API_KEY, "NO_COLOR": "1", "PYTHONPATH": path, **extra}


def spawn(args: list[str], *, mode: str = "none", n: int = 0, env: dict[str, str] | None = None,
          cwd: Path | None = None) -> subprocess.Popen:
    """Start ``rlorinfra ARGS`` in a child process, armed to SIGKILL itself per ``mode``/``n``."""
    cmd = [sys.executable, str(KILLER), mode, str(n), *args]
    return subprocess.Popen(cmd, env=env or subprocess_env(), cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def finish(proc: subprocess.Popen, timeout: float = 180) -> tuple[int, str, str]:
    """Wait for a child (generously: CI machines are slow) and return (code, stdout, stderr)."""
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err


def snapshot(folder: Path) -> dict[str, tuple[bytes, int]]:
    """Every file under ``folder``: relative path -> (bytes, mode)."""
    files = {}
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            files[str(path.relative_to(folder))] = (path.read_bytes(), stat.S_IMODE(path.stat().st_mode))
    return files


def live_jobs(world) -> list[dict]:
    """Every live (non-tombstoned) job, read from the emulator's store (no HTTP, no injected faults)."""
    jobs, after = [], None
    while True:
        page, after = world.store.list_jobs(page_size=200, after=after)
        jobs += page
        if after is None:
            return jobs


def live_by_name(world, prefix: str = "") -> Counter:
    """How many live jobs carry each display name starting with ``prefix``."""
    return Counter(j["displayName"] for j in live_jobs(world) if j["displayName"].startswith(prefix))


def live_ids(world) -> set[str]:
    """IDs of every live job on the emulator."""
    return {j["name"].rsplit("/", 1)[-1] for j in live_jobs(world)}


def read_state_strictly(path: Path):
    """Decode a state file with the product's own strict decoder (raises on anything invalid)."""
    from rlorinfra.state.codec import decode_state

    return decode_state(path.read_bytes(), path)


def assert_converged(world, names: list[str]) -> dict:
    """The invariants after a complete apply; returns figures about the live world."""
    counts = live_by_name(world)
    duplicates = sum(c - 1 for c in counts.values() if c > 1)
    assert duplicates == 0, f"duplicate live jobs: {[n for n, c in counts.items() if c > 1]}"
    assert sorted(counts) == sorted(names), f"live names differ: {sorted(set(counts) ^ set(names))}"
    state = read_state_strictly(world.state_path)
    assert sorted(state.jobs) == sorted(names)
    assert {r.job_id for r in state.jobs.values()} == live_ids(world), "a live job state does not know"
    assert all(r.phase == "ready" for r in state.jobs.values())
    if world.state_path.with_name(world.state_path.name + ".backup").exists():
        read_state_strictly(world.state_path.with_name(world.state_path.name + ".backup"))
    return {"live": sum(counts.values()), "duplicates": duplicates}
