"""Every file rlorinfra creates for its state is 0600 and every folder 0700, whatever the umask."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from rlorinfra.plan.planfile import write_plan_file
from rlorinfra.state.lock import StateLock, lock_file_path, lock_info_path
from rlorinfra.state.store import StateStore, make_private_folder
from tests.state.state_samples import sample_state

UMASKS = [0o000, 0o022, 0o077, 0o777]


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture(params=UMASKS, ids=lambda u: f"umask-{u:03o}")
def umask(request):
    """Run the test under this umask (process-wide), restored afterwards."""
    old = os.umask(request.param)
    try:
        yield request.param
    finally:
        os.umask(old)


def test_state_backup_lock_and_lock_info_are_0600_and_new_folders_0700(tmp_path, umask):
    path = tmp_path / "new" / "deeper" / "prod.state.json"
    store = StateStore(path)
    with StateLock(path, "apply"):
        assert mode(lock_info_path(path)) == 0o600
        first = store.write(sample_state())
        store.write(first.without_job("trainer-a"))
    assert mode(tmp_path / "new") == 0o700 and mode(tmp_path / "new" / "deeper") == 0o700
    for file in (path, store.backup_path, lock_file_path(path)):
        assert mode(file) == 0o600, file


def test_a_folder_made_by_the_lock_first_is_0700_too(tmp_path, umask):
    path = tmp_path / ".rlorinfra" / "prod.state.json"
    with StateLock(path, "plan"):
        pass
    assert mode(path.parent) == 0o700
    assert mode(lock_file_path(path)) == 0o600


def test_plan_files_are_0600(tmp_path, umask):
    plan = tmp_path / "release.plan"
    write_plan_file(
        plan, {"changes": []}, state_lineage=None, state_serial=0, config_digest="d", control_plane={"url": "local"}
    )
    assert mode(plan) == 0o600


def test_existing_folders_are_left_alone(tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o755)
    os.chmod(shared, 0o755)
    make_private_folder(shared / "mine")
    assert mode(shared) == 0o755 and mode(shared / "mine") == 0o700


def test_an_old_world_readable_lock_file_is_made_0600(tmp_path):
    path = tmp_path / "prod.state.json"
    lock_file_path(path).touch(mode=0o644)
    os.chmod(lock_file_path(path), 0o644)
    with StateLock(path, "apply"):
        pass
    assert mode(lock_file_path(path)) == 0o600
