"""The workspace builds the backend [state] names; a shared backend's secret comes from the environment."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from rlorinfra.config.load import load_config_text
from rlorinfra.config.model import StateBackendKind, StateSettings
from rlorinfra.errors import StateError
from rlorinfra.operations import Workspace
from rlorinfra.operations.workspace import open_backend
from rlorinfra.state.backends.local import LocalBackend
from rlorinfra.state.backends.memory import InMemoryBackend

JOB = '\n[jobs.alpha]\nbase_model = "accounts/fireworks/models/qwen3-8b"\n'
SECRET = "postgres://rl:hunter2-pw@127.0.0.1:1/infra"


def test_local_settings_open_the_local_file(tmp_path):
    backend = open_backend(StateSettings(path=tmp_path / "a.state.json"), {}, config_path=tmp_path / "a.toml")
    assert isinstance(backend, LocalBackend) and backend.path == (tmp_path / "a.state.json").resolve()
    assert backend.config_path == tmp_path / "a.toml"


def test_the_workspace_opens_the_configs_local_state(tmp_path):
    config = load_config_text('[state]\npath = "s/team.json"\n' + JOB, tmp_path / "x.toml", env={})
    ws = Workspace(config=config, api_key=None)
    assert ws.is_local_state and ws.state_where() == f"local file {(tmp_path / 's' / 'team.json').resolve()}"


def test_an_injected_backend_wins_over_the_config(tmp_path):
    config = load_config_text('[state]\nbackend = "postgres"\n' + JOB, tmp_path / "x.toml", env={})
    memory = InMemoryBackend("team")
    ws = Workspace(config=config, api_key=None, backend=memory)  # no PG_CONN_STR needed: nothing is opened
    assert ws.state_backend() is memory and not ws.is_local_state
    assert ws.state_where() == "in-memory state team"


@pytest.mark.parametrize("environ", [{}, {"TEAM_PG": ""}, {"TEAM_PG": "  "}])
def test_a_missing_connection_string_names_the_variable(environ):
    settings = StateSettings(backend=StateBackendKind.POSTGRES, conn_str_env="TEAM_PG")
    with pytest.raises(StateError) as caught:
        open_backend(settings, environ)
    assert "TEAM_PG is not set" in caught.value.summary and "export TEAM_PG=" in caught.value.detail


def test_the_missing_variable_is_reported_before_any_driver_is_imported(monkeypatch):
    monkeypatch.delitem(sys.modules, "rlorinfra.state.backends.postgres", raising=False)
    settings = StateSettings(backend=StateBackendKind.POSTGRES)
    with pytest.raises(StateError, match="PG_CONN_STR"):
        open_backend(settings, {"OTHER": SECRET})
    assert "rlorinfra.state.backends.postgres" not in sys.modules


def test_the_workspace_reads_the_connection_string_only_from_the_environ_it_was_given(tmp_path, monkeypatch):
    monkeypatch.setenv("PG_CONN_STR", SECRET)  # the process environment is not consulted below cli/
    config = load_config_text('[state]\nbackend = "postgres"\n' + JOB, tmp_path / "x.toml", env={})
    with pytest.raises(StateError, match="PG_CONN_STR is not set"):
        Workspace(config=config, api_key=None).state_backend()


def test_the_factory_calls_exactly_the_driver_constructors():
    """The postgres and s3 modules are built by others: pin the calls made to them, by source."""
    source = (Path(__file__).resolve().parents[2] / "rlorinfra" / "operations" / "workspace.py").read_text()
    assert (
        "PostgresBackend(\n        conn_str,\n        schema=settings.schema,\n        name=settings.name,\n"
        "        config_path=config_path,\n        timeout=state_timeout(environ),\n    )" in source
    )
    assert (
        "S3Backend(\n            bucket=settings.bucket,\n            key=settings.key,\n            "
        "region=settings.region,\n            endpoint_url=settings.endpoint_url,\n            "
        "timeout=state_timeout(environ),\n            config_path=config_path,\n        )" in source
    )


@pytest.mark.parametrize(("raw", "seconds"), [("", 30.0), ("2", 2.0), (" 0.5 ", 0.5), ("3600", 3600.0)])
def test_the_state_timeout_comes_from_the_environ_given(raw, seconds):
    from rlorinfra.operations.workspace import state_timeout

    assert state_timeout({"RLORINFRA_STATE_TIMEOUT": raw} if raw else {}) == seconds


@pytest.mark.parametrize("raw", ["0", "-1", "nan", "inf", "1e9", "soon"])
def test_a_bad_state_timeout_is_refused_naming_the_variable(raw):
    from rlorinfra.operations.workspace import state_timeout

    with pytest.raises(StateError, match="RLORINFRA_STATE_TIMEOUT is not a valid timeout"):
        state_timeout({"RLORINFRA_STATE_TIMEOUT": raw})


def test_the_state_timeout_reaches_both_team_backends():
    pg = open_backend(
        StateSettings(backend=StateBackendKind.POSTGRES), {"PG_CONN_STR": "host=h", "RLORINFRA_STATE_TIMEOUT": "7"}
    )
    s3 = open_backend(StateSettings(backend=StateBackendKind.S3, bucket="b", key="k"), {"RLORINFRA_STATE_TIMEOUT": "8"})
    assert (pg.timeout, s3.timeout) == (7.0, 8.0)  # type: ignore[attr-defined]
