"""The state store: atomic writes, backups, serial/lineage rules, 0600, clear errors."""

from __future__ import annotations

import os
import stat
import uuid
from dataclasses import replace
from pathlib import Path

import pytest

from rlorinfra.errors import StateError
from rlorinfra.state import store as store_module
from rlorinfra.state.codec import encode_state
from rlorinfra.state.model import State
from rlorinfra.state.store import StateStore, check_control_plane
from tests.state.state_samples import make_record, sample_state


@pytest.fixture
def store(tmp_path: Path) -> StateStore:
    return StateStore(tmp_path / "prod.state.json")


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_missing_file_reads_as_empty_state(store):
    assert not store.exists()
    state = store.read()
    assert state == State() and state.serial == 0 and state.lineage is None
    assert store.backup_path == store.path.with_name("prod.state.json.backup")


def test_first_write_sets_serial_1_and_a_uuid4_lineage(store):
    written = store.write(sample_state())
    assert written.serial == 1
    assert uuid.UUID(written.lineage).version == 4
    assert store.read() == written
    assert store.path.read_bytes() == encode_state(written)
    assert files(store.path.parent) == ["prod.state.json"]  # no previous content, no backup


def test_files_are_0600_even_with_a_permissive_umask_and_an_old_0644_file(store):
    store.path.write_bytes(encode_state(replace(sample_state(), serial=4, lineage="L")))
    os.chmod(store.path, 0o644)
    old_umask = os.umask(0)
    try:
        store.write(sample_state().without_job("trainer-a"))
    finally:
        os.umask(old_umask)
    assert mode(store.path) == 0o600
    assert mode(store.backup_path) == 0o600


def test_unchanged_content_writes_nothing(store):
    first = store.write(sample_state())
    before = store.path.stat()
    again = store.write(replace(sample_state(), serial=40, lineage="someone-else"))
    assert again == first
    assert store.path.stat().st_mtime_ns == before.st_mtime_ns
    assert store.path.stat().st_ino == before.st_ino
    assert not store.backup_path.exists()


def test_empty_state_on_a_missing_file_creates_nothing(store):
    assert store.write(State()) == State()
    assert not store.exists()


def test_change_bumps_serial_keeps_lineage_and_backs_up_the_previous_bytes(store):
    first = store.write(sample_state())
    first_bytes = store.path.read_bytes()
    second = store.write(first.without_job("trainer-a"))
    assert (second.serial, second.lineage) == (2, first.lineage)
    assert store.backup_path.read_bytes() == first_bytes
    third = store.write(second.with_job("trainer-c", make_record("job-c")))
    assert third.serial == 3
    assert store.read() == third


def test_serial_and_lineage_from_the_caller_are_ignored(store):
    first = store.write(sample_state())
    second = store.write(replace(first.without_job("trainer-a"), serial=99, lineage="not-mine"))
    assert second.serial == 2
    assert second.lineage == first.lineage
    assert store.read().lineage == first.lineage


def test_backup_holds_exactly_the_previous_version(store):
    versions = [sample_state()]
    versions.append(versions[0].without_job("trainer-a"))
    versions.append(versions[1].with_job("trainer-c", make_record("job-c")))
    written = [store.write(v) for v in versions]
    assert StateStore(store.backup_path).read() == written[1]
    assert store.read() == written[2]


def _fail_replace_of(target: Path, error: BaseException, monkeypatch):
    real_replace = os.replace

    def replace_or_crash(src, dst, *args, **kwargs):
        if Path(dst) == target:
            raise error
        return real_replace(src, dst, *args, **kwargs)

    monkeypatch.setattr(store_module.os, "replace", replace_or_crash)


@pytest.mark.parametrize("error", [OSError(28, "No space left on device"), KeyboardInterrupt()])
def test_crash_during_write_leaves_the_old_file_intact_and_no_temp_file(store, monkeypatch, error):
    store.write(sample_state())
    old_bytes = store.path.read_bytes()
    _fail_replace_of(store.path, error, monkeypatch)
    expected = StateError if isinstance(error, OSError) else KeyboardInterrupt
    with pytest.raises(expected) as err:
        store.write(sample_state().without_job("trainer-b"))
    assert store.path.read_bytes() == old_bytes
    assert files(store.path.parent) == ["prod.state.json", "prod.state.json.backup"]
    if expected is StateError:
        assert "No space left on device" in err.value.detail
        assert "intact" in err.value.detail
    monkeypatch.undo()
    assert store.read().serial == 1  # and the next write works normally
    assert store.write(sample_state().without_job("trainer-b")).serial == 2


def test_crash_while_writing_the_temp_file_leaves_no_temp_file(store, monkeypatch):
    store.write(sample_state())
    old_bytes = store.path.read_bytes()

    def broken_fsync(fd):
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(store_module.os, "fsync", broken_fsync)
    with pytest.raises(StateError, match="Cannot write state file"):
        store.write(sample_state().without_job("trainer-b"))
    assert store.path.read_bytes() == old_bytes
    assert not [name for name in files(store.path.parent) if name.endswith(".tmp")]


def test_write_fsyncs_the_file_and_the_folder(store, monkeypatch):
    synced: list[str] = []
    real_fsync = os.fsync

    def recording_fsync(fd):
        synced.append("dir" if stat.S_ISDIR(os.fstat(fd).st_mode) else "file")
        real_fsync(fd)

    monkeypatch.setattr(store_module.os, "fsync", recording_fsync)
    store.write(sample_state())
    assert synced == ["file", "dir"]


def test_corrupt_file_is_refused_for_reading_and_writing(store):
    written = store.write(sample_state())
    store.write(written.without_job("trainer-a"))
    good = store.path.read_bytes()
    store.path.write_bytes(good[:40])  # a torn write
    for action in (store.read, lambda: store.write(sample_state())):
        with pytest.raises(StateError) as err:
            action()
        assert "is corrupt" in err.value.summary
        assert f"cp {store.backup_path} {store.path}" in err.value.detail
    assert store.path.read_bytes() == good[:40]  # never overwritten
    # The documented recovery works.
    store.path.write_bytes(store.backup_path.read_bytes())
    assert store.read() == written


def test_unreadable_path_is_a_state_error(tmp_path):
    (tmp_path / "dir.json").mkdir()
    with pytest.raises(StateError, match="is not a regular file"):
        StateStore(tmp_path / "dir.json").read()


def test_missing_folder_is_created_on_first_write(tmp_path):
    store = StateStore(tmp_path / "states" / "prod.json")
    assert store.write(sample_state()).serial == 1
    assert store.exists()


# ------------------------------------------------------------- control plane


def test_same_control_plane_is_fine():
    assert check_control_plane(sample_state(), "local", "acct") is None


def test_state_without_a_recorded_control_plane_fits_anyone():
    assert check_control_plane(State(), "https://api.fireworks.ai", "other") is None


def test_same_account_through_another_url_is_only_noted():
    note = check_control_plane(sample_state(), "https://proxy.internal", "acct")
    assert note and "local" in note and "https://proxy.internal" in note and "acct" in note


def test_another_account_is_refused_with_what_to_do():
    with pytest.raises(StateError) as err:
        check_control_plane(sample_state(), "https://api.fireworks.ai", "prod-acct", path=Path("x.json"))
    detail = err.value.detail
    assert "`acct` at local" in detail
    assert "`prod-acct` at https://api.fireworks.ai" in detail
    assert "[state] path" in detail and "FIREWORKS_BASE_URL" in detail and "x.json" in detail


def test_a_tuple_where_disk_has_a_list_is_no_change(store):
    first = store.write(sample_state().with_job("t", make_record("job-t", extra_args=["--x", "1"])))
    same = first.with_job("t", make_record("job-t", extra_args=("--x", "1")))
    assert store.write(same) == first
    assert store.read().serial == 1


def test_a_secret_in_the_callers_control_plane_is_neither_written_nor_a_change(store):
    first = store.write(sample_state())
    cp = {**first.control_plane, "api_key": "fw-secret"}
    assert store.write(replace(first, control_plane=cp)) == first
    assert b"fw-secret" not in store.path.read_bytes()


@pytest.mark.parametrize(
    "where",
    ['postgres state "prod" (schema rlorinfra, db infra on db.internal:5432)', "s3://team-bucket/prod.json"],
)
def test_another_account_on_a_shared_backend_names_it_and_never_says_state_file(where):
    with pytest.raises(StateError) as err:
        check_control_plane(sample_state(), "https://api.fireworks.ai", "prod-acct", where=where)
    detail = err.value.detail
    assert detail.startswith(f"The state in {where} belongs to account `acct`")
    assert "state file" not in detail and "[state] path" not in detail
    assert "`[state] name` for postgres, `[state] key` for s3" in detail


def test_another_url_on_a_shared_backend_is_noted_with_its_name():
    note = check_control_plane(sample_state(), "https://proxy.internal", "acct", where="s3://b/k")
    assert note and note.startswith("The state in s3://b/k was recorded through local")


def test_another_emulator_world_on_a_shared_backend_points_at_its_keys():
    from rlorinfra.operations.planning import check_instance

    state = replace(sample_state(), control_plane={"url": "local", "account_id": "acct", "instance": "world-1"})
    with pytest.raises(StateError) as err:
        check_instance(state, {"url": "local", "instance": "world-2"}, "s3://b/k", local=False)
    assert "[state] path" not in err.value.detail and "`[state] key` for s3" in err.value.detail
    with pytest.raises(StateError) as err:
        check_instance(state, {"url": "local", "instance": "world-2"}, "state file x.json")
    assert "`[state] path`" in err.value.detail
