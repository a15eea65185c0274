"""state pull / push / migrate as flows: local -> in-memory and local -> local, lineage and serial kept."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pytest

from rlorinfra.config.load import load_config
from rlorinfra.errors import StateChangedError, StateError, StateLockedError
from rlorinfra.operations import MigrateOutcome, Workspace, state_migrate, state_pull, state_push
from rlorinfra.state.backends.local import LocalBackend
from rlorinfra.state.backends.memory import InMemoryBackend
from rlorinfra.state.codec import decode_state, encode_state
from rlorinfra.state.model import JobRecord, State
from tests.cli.conftest import write_quickstart

RECORD = JobRecord(job_id="a-1", job_name="accounts/x/rlorTrainerJobs/a-1", endpoint="http://e", spec={}, phase="ready")
OTHER = JobRecord(job_id="b-2", job_name="accounts/x/rlorTrainerJobs/b-2", endpoint="http://f", spec={}, phase="ready")
WHEN = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)


@dataclass
class NotingUI:
    """Records the notes a flow gives (push --force warns through one)."""

    notes: list[str] = field(default_factory=list)

    def note(self, text: str) -> None:
        self.notes.append(text)


def local_state(path: Path, *records: tuple[str, JobRecord]) -> State:
    """A state file at ``path`` written through the local backend, one write per record."""
    backend = LocalBackend(path)
    state, version = backend.read()
    for name, record in records:
        state, version = backend.write(state.with_job(name, record), version)
    return state


def workspace(tmp_path: Path, backend: object | None = None) -> Workspace:
    return Workspace(config=load_config(write_quickstart(tmp_path), env={}), api_key=None, backend=backend)  # type: ignore[arg-type]


def test_migrate_into_memory_keeps_lineage_serial_and_the_local_file(tmp_path):
    source = tmp_path / "old.state.json"
    state = local_state(source, ("a", RECORD), ("b", OTHER))
    before = source.read_bytes()
    memory = InMemoryBackend()
    result = state_migrate(workspace(tmp_path, memory), source, now=WHEN)
    stored, version = memory.read()
    assert result.outcome is MigrateOutcome.MIGRATED
    assert (stored.lineage, stored.serial, version) == (state.lineage, 2, "2")
    assert stored.jobs == state.jobs
    assert source.read_bytes() == before  # left in place, untouched
    note = (tmp_path / "old.state.json.migrated").read_text()
    assert "in-memory state memory" in note and "2026-12-06T12:00:00+00:00" in note and state.lineage in note


def test_migrate_rerun_is_a_no_op_that_says_so(tmp_path):
    source = tmp_path / "old.state.json"
    local_state(source, ("a", RECORD))
    memory = InMemoryBackend()
    ws = workspace(tmp_path, memory)
    state_migrate(ws, source, now=WHEN)
    note = (tmp_path / "old.state.json.migrated").read_text()
    again = state_migrate(ws, source, now=datetime(2027, 1, 1, tzinfo=UTC))
    assert again.outcome is MigrateOutcome.ALREADY_THERE
    assert memory.read()[1] == "1"
    assert (tmp_path / "old.state.json.migrated").read_text() == note  # the first migration's record stays


def test_migrate_refuses_another_lineage_and_changes_nothing(tmp_path):
    source = tmp_path / "old.state.json"
    local_state(source, ("a", RECORD))
    memory = InMemoryBackend()
    memory.write(State().with_job("b", OTHER), None)
    with pytest.raises(StateError, match="is another state"):
        state_migrate(workspace(tmp_path, memory), source)
    assert set(memory.read()[0].jobs) == {"b"}
    assert not (tmp_path / "old.state.json.migrated").exists()


def test_migrate_refuses_a_backend_that_moved_on(tmp_path):
    source = tmp_path / "old.state.json"
    local_state(source, ("a", RECORD))
    memory = InMemoryBackend()
    ws = workspace(tmp_path, memory)
    state_migrate(ws, source)
    state, version = memory.read()
    memory.write(state.with_job("b", OTHER), version)
    with pytest.raises(StateError, match="at serial 2"):
        state_migrate(ws, source)


def test_migrate_local_to_local(tmp_path):
    source = tmp_path / "old.state.json"
    state = local_state(source, ("a", RECORD), ("b", OTHER))
    ws = workspace(tmp_path)  # the quickstart's own local file, rlorinfra.state.json
    state_migrate(ws, source)
    target = tmp_path / "rlorinfra.state.json"
    assert target.read_bytes() == source.read_bytes()
    assert decode_state(target.read_bytes(), target).serial == state.serial


def test_migrate_refuses_the_configured_file_itself(tmp_path):
    ws = workspace(tmp_path)
    local_state(ws.config.state_path, ("a", RECORD))
    with pytest.raises(StateError, match="already the configured state"):
        state_migrate(ws, ws.config.state_path)


def test_migrate_of_a_missing_file_is_an_error(tmp_path):
    with pytest.raises(StateError, match="No state file"):
        state_migrate(workspace(tmp_path, InMemoryBackend()), tmp_path / "nope.json")


def test_migrate_waits_for_the_backend_lock(tmp_path):
    source = tmp_path / "old.state.json"
    local_state(source, ("a", RECORD))
    memory = InMemoryBackend()
    with memory.lock("apply", 0), pytest.raises(StateLockedError):
        state_migrate(workspace(tmp_path, memory), source)
    assert memory.read()[1] is None


def test_pull_prints_the_stored_bytes(tmp_path):
    memory = InMemoryBackend()
    ws = workspace(tmp_path, memory)
    assert state_pull(ws) == b""
    stored, _ = memory.write(State().with_job("a", RECORD), None)
    assert state_pull(ws) == encode_state(stored)
    assert json.loads(state_pull(ws))["serial"] == 1


def pushed_file(tmp_path: Path, state: State) -> Path:
    path = tmp_path / "push.json"
    path.write_bytes(encode_state(state))
    return path


def test_push_a_newer_serial_of_the_same_lineage_keeps_it(tmp_path):
    memory = InMemoryBackend()
    stored, _ = memory.write(State().with_job("a", RECORD), None)
    newer = State(serial=7, lineage=stored.lineage).with_job("b", OTHER)
    result = state_push(workspace(tmp_path, memory), pushed_file(tmp_path, newer), NotingUI())
    after, version = memory.read()
    assert (after.serial, after.lineage, version, set(after.jobs)) == (7, stored.lineage, "7", {"b"})
    assert (result.serial, result.forced) == (7, ())


def test_push_into_an_empty_backend_keeps_lineage_and_serial(tmp_path):
    memory = InMemoryBackend()
    state = State(serial=4, lineage="11111111-2222-4333-8444-555555555555").with_job("a", RECORD)
    state_push(workspace(tmp_path, memory), pushed_file(tmp_path, state), NotingUI())
    assert memory.read()[0] == state


@pytest.mark.parametrize(
    ("serial", "lineage", "message"),
    [(1, None, "not higher"), (0, None, "not higher"), (5, "99999999-2222-4333-8444-555555555555", "lineage")],
)
def test_push_refuses_an_older_serial_or_another_lineage(tmp_path, serial, lineage, message):
    memory = InMemoryBackend()
    stored, _ = memory.write(State().with_job("a", RECORD), None)
    file = State(serial=serial, lineage=lineage or stored.lineage).with_job("b", OTHER)
    with pytest.raises(StateError, match=message) as caught:
        state_push(workspace(tmp_path, memory), pushed_file(tmp_path, file), NotingUI())
    assert "--force" in caught.value.detail
    assert memory.read()[0] == stored


def test_push_force_overrides_with_a_warning_and_never_moves_the_serial_back(tmp_path):
    memory = InMemoryBackend()
    stored, _ = memory.write(State().with_job("a", RECORD), None)
    stored, _ = memory.write(stored.with_job("b", OTHER), "1")
    other = State(serial=1, lineage="99999999-2222-4333-8444-555555555555").with_job("c", RECORD)
    ui = NotingUI()
    result = state_push(workspace(tmp_path, memory), pushed_file(tmp_path, other), ui, force=True)
    after, _ = memory.read()
    assert (after.serial, after.lineage, set(after.jobs)) == (3, other.lineage, {"c"})
    assert len(result.forced) == 2 and "--force" in ui.notes[0] and "lineage" in ui.notes[0]


def test_push_refuses_a_damaged_file(tmp_path):
    memory = InMemoryBackend()
    path = tmp_path / "push.json"
    path.write_text('{"format_version": 2, "serial": 1, "serial": 2}')
    with pytest.raises(StateError):
        state_push(workspace(tmp_path, memory), path, NotingUI())
    assert memory.read()[1] is None


def test_push_is_fenced_by_the_version_read_under_the_lock(tmp_path):
    """A write that slips in between the read and the write (no lock honoured) is not overwritten."""

    class Sneaky(InMemoryBackend):
        def read(self):  # type: ignore[no-untyped-def]
            result = super().read()
            if not getattr(self, "sneaked", False):
                self.sneaked = True
                super().write(result[0].with_job("z", OTHER), result[1])
            return result

    memory = Sneaky()
    stored, _ = InMemoryBackend.write(memory, State().with_job("a", RECORD), None)
    memory.sneaked = False
    newer = State(serial=9, lineage=stored.lineage).with_job("b", OTHER)
    with pytest.raises(StateChangedError):
        state_push(workspace(tmp_path, memory), pushed_file(tmp_path, newer), NotingUI())
    assert set(memory.read()[0].jobs) == {"a", "z"}


def test_push_of_a_local_file_to_local_keeps_serial(tmp_path):
    ws = workspace(tmp_path)
    stored = local_state(ws.config.state_path, ("a", RECORD))
    newer = State(serial=3, lineage=stored.lineage).with_job("b", OTHER)
    state_push(ws, pushed_file(tmp_path, newer), NotingUI())
    on_disk = decode_state(ws.config.state_path.read_bytes(), ws.config.state_path)
    assert (on_disk.serial, on_disk.lineage) == (3, stored.lineage)
    assert (tmp_path / "rlorinfra.state.json.backup").exists()
