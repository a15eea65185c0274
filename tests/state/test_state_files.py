"""The one atomic-file writer (``state/files.py``), shared by state, lock info and plan files."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from rlorinfra.plan.planfile import write_plan_file
from rlorinfra.state.files import atomic_write


@pytest.fixture
def fsynced(monkeypatch) -> list[str]:
    """What each ``os.fsync`` call synced: "file" or "folder"."""
    synced: list[str] = []
    real_fsync = os.fsync

    def recording_fsync(fd: int) -> None:
        synced.append("folder" if stat.S_ISDIR(os.fstat(fd).st_mode) else "file")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", recording_fsync)
    return synced


def test_a_durable_write_syncs_the_file_then_its_folder(tmp_path, fsynced):
    atomic_write(tmp_path / "a.json", b"{}\n")
    assert fsynced == ["file", "folder"]
    assert (tmp_path / "a.json").read_bytes() == b"{}\n"


def test_a_plan_file_is_written_durably_too(tmp_path, fsynced):
    # Its own copy of the writer used to skip the folder: the rename could be lost in a power cut.
    write_plan_file(
        tmp_path / "tfplan", {"changes": []}, state_lineage=None, state_serial=0, config_digest="d", control_plane={}
    )
    assert fsynced == ["file", "folder"]
    assert stat.S_IMODE((tmp_path / "tfplan").stat().st_mode) == 0o600


def test_make_folders_false_leaves_a_missing_folder_an_error(tmp_path):
    target = tmp_path / "missing" / "tfplan"
    with pytest.raises(FileNotFoundError):
        atomic_write(target, b"x", make_folders=False)
    assert not target.parent.exists()


def test_missing_folders_are_made_private(tmp_path):
    atomic_write(tmp_path / "a" / "b" / "state.json", b"x")
    for folder in (tmp_path / "a", tmp_path / "a" / "b"):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert sorted(p.name for p in Path(tmp_path / "a" / "b").iterdir()) == ["state.json"]
