"""A real format-1 state from the previous rlorinfra is read, plans clean, and is upgraded on a change.

``fixtures/format1`` was made by the rlorinfra before state format 2 (commit
e89b0a7): ``apply`` of its config with both jobs running, then again with
both stopped. The emulator database it ran against ships beside it, so the
live world matches the state whenever the test runs (stopped jobs stay
CANCELLED; running ones would be stopped by the emulator's inactivity timer).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.reliability.helpers import run_rlorinfra

FIXTURE = Path(__file__).with_name("fixtures") / "format1"


@pytest.fixture
def old_project(tmp_path: Path) -> Path:
    """The fixture laid out as the old rlorinfra left it: config, state and emulator database."""
    shutil.copy(FIXTURE / "rlorinfra.toml", tmp_path / "rlorinfra.toml")
    shutil.copy(FIXTURE / "state-format1.json", tmp_path / "rlorinfra.state.json")
    (tmp_path / ".rlorinfra").mkdir(mode=0o700)
    shutil.copy(FIXTURE / "control-plane.sqlite3", tmp_path / ".rlorinfra" / "control-plane.sqlite3")
    return tmp_path / "rlorinfra.toml"


def cli(config: Path, *args: str) -> str:
    code, out, err = run_rlorinfra(*args, "-f", str(config))
    assert code == 0, out + err
    return out


def test_a_format_1_state_plans_clean_and_is_upgraded_by_the_next_change(old_project):
    state_path = old_project.with_name("rlorinfra.state.json")
    old_bytes = (FIXTURE / "state-format1.json").read_bytes()
    old = json.loads(old_bytes)
    assert old["format_version"] == 1 and "jobs" in old

    # Format 1 knew no `protected`: the declared prevent_destroy is the only thing to record,
    # as a state-only update. Planning writes nothing: the file stays format 1.
    planned = cli(old_project, "plan")
    assert "protected: true" in planned and "to create" not in planned
    assert state_path.read_bytes() == old_bytes

    cli(old_project, "state", "rm", "grpo-reference")
    new = json.loads(state_path.read_bytes())
    assert new["format_version"] == 2 and "jobs" not in new
    assert (new["serial"], new["lineage"], new["control_plane"]) == (
        old["serial"] + 1,
        old["lineage"],
        old["control_plane"],
    )
    assert new["resources"] == {"job": {"grpo-policy": old["jobs"]["grpo-policy"]}}
    assert state_path.with_name("rlorinfra.state.json.backup").read_bytes() == old_bytes

    cli(old_project, "apply", "-auto-approve", "--target", "grpo-policy")  # records the protection, nothing else
    after = json.loads(state_path.read_bytes())
    assert after["resources"]["job"]["grpo-policy"] == {**old["jobs"]["grpo-policy"], "protected": True} | {
        "updated_at": after["resources"]["job"]["grpo-policy"]["updated_at"]
    }
    assert "No changes" in cli(old_project, "plan", "--target", "grpo-policy")
