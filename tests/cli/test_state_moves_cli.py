"""`state pull`, `state push`, `state migrate` through the CLI: local -> local, and into an in-memory backend."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rlorinfra.state.backends.local import LocalBackend
from rlorinfra.state.backends.memory import InMemoryBackend
from rlorinfra.state.codec import decode_state, encode_state
from rlorinfra.state.model import JobRecord, State
from tests.cli.conftest import write_quickstart
from tests.conftest import run_cli

RECORD = JobRecord(job_id="a-1", job_name="accounts/x/rlorTrainerJobs/a-1", endpoint="http://e", spec={}, phase="ready")
SHARED = '\n[state]\npath = "shared/team.state.json"\n'


def write_state(path: Path, *names: str) -> State:
    backend = LocalBackend(path)
    state, version = backend.read()
    for name in names:
        record = JobRecord(job_id=f"{name}-1", job_name=f"accounts/x/rlorTrainerJobs/{name}-1", endpoint="http://e",
                           spec={}, phase="ready")  # fmt: skip
        state, version = backend.write(state.with_job(name, record), version)
    return state


@pytest.fixture
def team(tmp_path: Path) -> Path:
    """A folder with the quickstart's local state (two writes) and team.toml pointing at another file."""
    config = write_quickstart(tmp_path)
    (tmp_path / "team.toml").write_text(config.read_text() + SHARED)
    write_state(tmp_path / "rlorinfra.state.json", "a", "b")
    return tmp_path


def test_migrate_then_pull_gives_the_same_bytes_and_a_rerun_is_a_no_op(team):
    first = run_cli(["state", "migrate", "--from", "rlorinfra.state.json", "-f", "team.toml"], cwd=team)
    assert first.exit_code == 0, first.output
    assert "Migrated rlorinfra.state.json to local file" in first.stdout and "serial 2" in first.stdout
    pulled = run_cli(["state", "pull", "-f", "team.toml"], cwd=team)
    assert pulled.exit_code == 0 and pulled.stdout.encode() == (team / "rlorinfra.state.json").read_bytes()
    again = run_cli(["state", "migrate", "--from", "rlorinfra.state.json", "-f", "team.toml"], cwd=team)
    assert again.exit_code == 0 and "Nothing to do" in again.stdout
    assert (team / "rlorinfra.state.json").exists()
    assert "team.state.json" in (team / "rlorinfra.state.json.migrated").read_text()


def test_pull_of_no_state_prints_nothing_and_says_so(team):
    result = run_cli(["state", "pull", "-f", "team.toml"], cwd=team)
    assert result.exit_code == 0 and result.stdout == "" and "No state is stored" in result.stderr


def test_push_refusals_name_the_check_and_force_overrides_with_a_warning(team):
    stored = write_state(team / "shared" / "team.state.json", "a", "b", "c")
    older = team / "older.json"
    older.write_bytes(encode_state(State(serial=2, lineage=stored.lineage).with_job("x", RECORD)))
    refused = run_cli(["state", "push", "older.json", "-f", "team.toml"], cwd=team)
    assert refused.exit_code == 1
    assert "serial 2 is not higher than the stored serial 3" in refused.stderr and "--force" in refused.stderr
    forced = run_cli(["state", "push", "-force", "older.json", "-f", "team.toml"], cwd=team)
    assert forced.exit_code == 0, forced.output
    assert "Warning: --force" in forced.stderr and "serial 4" in forced.stdout
    now = decode_state((team / "shared" / "team.state.json").read_bytes(), Path("x"))
    assert (set(now.jobs), now.serial, now.lineage) == ({"x"}, 4, stored.lineage)


def test_push_of_another_lineage_is_refused(team):
    write_state(team / "shared" / "team.state.json", "a")
    result = run_cli(["state", "push", "rlorinfra.state.json", "-f", "team.toml"], cwd=team)
    assert result.exit_code == 1 and "lineage" in result.stderr and "differs from the stored lineage" in result.stderr


def test_push_of_a_newer_file_keeps_its_serial(team):
    pulled = json.loads((team / "rlorinfra.state.json").read_text())
    run_cli(["state", "migrate", "--from", "rlorinfra.state.json", "-f", "team.toml"], cwd=team)
    pulled["serial"] = 10
    (team / "fixed.json").write_text(json.dumps(pulled))
    result = run_cli(["state", "push", "fixed.json", "-f", "team.toml"], cwd=team)
    assert result.exit_code == 0, result.output
    assert json.loads(run_cli(["state", "pull", "-f", "team.toml"], cwd=team).stdout)["serial"] == 10


def test_migrate_into_an_in_memory_backend_through_the_cli(team, monkeypatch):
    memory = InMemoryBackend("team")
    monkeypatch.setattr("rlorinfra.operations.workspace.open_backend", lambda *a, **k: memory)
    result = run_cli(["state", "migrate", "--from", "rlorinfra.state.json"], cwd=team)
    assert result.exit_code == 0, result.output
    assert "to in-memory state team" in result.stdout
    stored, version = memory.read()
    assert version == "2" and set(stored.jobs) == {"a", "b"}
    assert run_cli(["state", "list"], cwd=team).stdout.split() == ["a", "b"]


def test_a_postgres_config_without_its_variable_fails_naming_it(team):
    (team / "pg.toml").write_text(write_quickstart(team).read_text() + '\n[state]\nbackend = "postgres"\n')
    result = run_cli(["state", "pull", "-f", "pg.toml"], cwd=team, env={"PG_CONN_STR": ""})
    assert result.exit_code == 1 and "PG_CONN_STR is not set" in result.stderr
