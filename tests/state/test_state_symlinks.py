"""Symlinked state paths: the target is read, written atomically, backed up and locked
beside itself; the link stays a link. Default path and ``[state] path`` alike."""

from __future__ import annotations

from pathlib import Path

import pytest

from rlorinfra.config.load import load_config_text
from rlorinfra.errors import ConfigError, StateError, StateLockedError
from rlorinfra.state.lock import StateLock, force_unlock, lock_file_path, lock_info_path, read_lock_info
from rlorinfra.state.store import StateStore
from tests.state.state_samples import sample_state

JOB = '[jobs.a]\nbase_model = "accounts/fireworks/models/qwen3-8b"\n'


@pytest.fixture
def linked(tmp_path: Path) -> tuple[Path, Path]:
    """``work/prod.state.json`` -> ``vault/real.state.json`` (another folder), target not yet there."""
    work, vault = tmp_path / "work", tmp_path / "vault"
    work.mkdir()
    vault.mkdir()
    link = work / "prod.state.json"
    link.symlink_to(vault / "real.state.json")
    return link, vault / "real.state.json"


def names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_a_dangling_link_creates_its_target_and_stays_a_link(linked):
    link, target = linked
    store = StateStore(link)
    assert store.path == target
    written = store.write(sample_state())
    assert link.is_symlink() and link.resolve() == target
    assert target.is_file() and not target.is_symlink()
    assert StateStore(link).read() == written
    assert names(link.parent) == ["prod.state.json"]  # nothing beside the link


def test_writes_through_a_link_replace_the_target_and_back_it_up_beside_it(linked):
    link, target = linked
    first = StateStore(link).write(sample_state())
    first_bytes = target.read_bytes()
    second = StateStore(link).write(first.without_job("trainer-a"))
    assert second.serial == first.serial + 1
    assert link.is_symlink() and link.resolve() == target
    assert (target.parent / "real.state.json.backup").read_bytes() == first_bytes
    assert names(link.parent) == ["prod.state.json"]
    assert names(target.parent) == ["real.state.json", "real.state.json.backup"]  # no temp left


def test_a_relative_link_is_followed(tmp_path):
    (tmp_path / "vault").mkdir()
    link = tmp_path / "prod.state.json"
    link.symlink_to(Path("vault") / "real.state.json")
    StateStore(link).write(sample_state())
    assert link.is_symlink() and (tmp_path / "vault" / "real.state.json").is_file()


def test_a_chain_of_links_is_followed_to_the_end(tmp_path, linked):
    link, target = linked
    outer = tmp_path / "outer.state.json"
    outer.symlink_to(link)
    StateStore(outer).write(sample_state())
    assert outer.is_symlink() and link.is_symlink() and target.is_file()


def test_the_lock_is_taken_beside_the_target_and_shared_by_every_way_in(linked):
    link, target = linked
    with StateLock(link, "apply") as info:
        assert lock_file_path(target).exists() and lock_info_path(target).exists()
        assert names(link.parent) == ["prod.state.json"]
        assert info.path == str(target)
        assert read_lock_info(link) == info
        # The target path and the link path are one state: one lock.
        with pytest.raises(StateLockedError):
            StateLock(target, "apply").acquire()
    assert not lock_info_path(target).exists()


def test_force_unlock_through_the_link_removes_the_targets_lock(linked):
    link, target = linked
    holder = StateLock(target, "apply")
    info = holder.acquire()
    try:
        force_unlock(link, info.id)
        assert not lock_info_path(target).exists() and not lock_file_path(target).exists()
    finally:
        holder.release()


def test_a_symlink_loop_is_a_clear_state_error(tmp_path):
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.symlink_to(b)
    b.symlink_to(a)
    with pytest.raises(StateError) as info:
        StateStore(a).read()
    assert "Cannot read state file" in info.value.summary
    assert a.is_symlink() and b.is_symlink()


# -- through the config ----------------------------------------------------------------------


def test_the_default_state_path_is_resolved_when_it_is_a_link(tmp_path, linked):
    link, target = linked
    config = link.parent / "prod.toml"
    loaded = load_config_text(JOB, config, {})
    assert loaded.state_path == target


def test_state_path_in_the_config_that_is_a_link_into_another_folder_is_resolved(tmp_path, linked):
    link, target = linked
    config = tmp_path / "elsewhere" / "rlorinfra.toml"
    text = JOB + f'[state]\npath = "{link}"\n'
    assert load_config_text(text, config, {}).state_path == target
    relative = JOB + '[state]\npath = "../work/prod.state.json"\n'
    assert load_config_text(relative, config, {}).state_path == target


def test_a_symlink_loop_as_state_path_is_a_config_error(tmp_path):
    (tmp_path / "rlorinfra.state.json").symlink_to(tmp_path / "rlorinfra.state.json")
    with pytest.raises(ConfigError) as info:
        load_config_text(JOB, tmp_path / "rlorinfra.toml", {})
    assert "state.path cannot be used" in str(info.value)


def test_a_link_to_the_config_itself_is_refused(tmp_path):
    config = tmp_path / "rlorinfra.toml"
    config.write_text(JOB)
    (tmp_path / "rlorinfra.state.json").symlink_to(config)
    with pytest.raises(ConfigError) as info:
        load_config_text(JOB, config, {})
    assert "points at the configuration file itself" in str(info.value)
