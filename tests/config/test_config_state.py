"""[state]: the backend, its keys, and every mistake named with file, line and key."""

from __future__ import annotations

from pathlib import Path

import pytest

from rlorinfra.config.load import load_config_text, validate_bytes
from rlorinfra.config.model import StateBackendKind, StateSettings
from rlorinfra.errors import ConfigError

JOB = '\n[jobs.alpha]\nbase_model = "accounts/fireworks/models/qwen3-8b"\n'


def load(tmp_path: Path, state: str, name: str = "prod-eu.toml"):
    return load_config_text(state + JOB, tmp_path / name, env={})


def problems(tmp_path: Path, state: str) -> list[str]:
    report = validate_bytes((state + JOB).encode(), tmp_path / "prod.toml", env={})
    return [d.message() for d in report.errors]


def test_no_state_table_is_the_local_file_beside_the_config(tmp_path):
    config = load(tmp_path, "")
    assert config.state_settings == StateSettings(
        backend=StateBackendKind.LOCAL, path=tmp_path.resolve() / "prod-eu.state.json", name="prod_eu"
    )
    assert config.state_path == config.state_settings.path


def test_postgres_defaults(tmp_path):
    settings = load(tmp_path, '[state]\nbackend = "postgres"\n').state_settings
    assert settings.backend is StateBackendKind.POSTGRES
    assert (settings.conn_str_env, settings.schema, settings.name) == ("PG_CONN_STR", "rlorinfra", "prod_eu")


def test_postgres_keys(tmp_path):
    text = '[state]\nbackend = "postgres"\nconn_str_env = "TEAM_PG"\nschema = "infra"\nname = "prod"\n'
    settings = load(tmp_path, text).state_settings
    assert (settings.conn_str_env, settings.schema, settings.name) == ("TEAM_PG", "infra", "prod")


def test_s3_keys(tmp_path):
    text = (
        '[state]\nbackend = "s3"\nbucket = "team-state"\nkey = "rl/prod.json"\nregion = "eu-west-1"\n'
        'endpoint_url = "http://127.0.0.1:9000"\n'
    )
    settings = load(tmp_path, text).state_settings
    assert settings.backend is StateBackendKind.S3
    assert (settings.bucket, settings.key, settings.region, settings.endpoint_url) == (
        "team-state",
        "rl/prod.json",
        "eu-west-1",
        "http://127.0.0.1:9000",
    )


@pytest.mark.parametrize(
    ("state", "expected"),
    [
        ('backend = "postgress"', ["prod.toml:2: state.backend must be one of", 'Did you mean "postgres"?']),
        ("backend = 3", ["prod.toml:2: state.backend must be one of local, postgres, s3, got 3"]),
        ('backend = "postgres"\npath = "x.json"', ['prod.toml:3: state.path belongs to backend = "local"']),
        ('backend = "local"\nbucket = "b"', ['prod.toml:3: state.bucket belongs to backend = "s3"']),
        ('backend = "s3"\nschema = "x"\nbucket = "b"\nkey = "k"', ['state.schema belongs to backend = "postgres"']),
        ('backend = "s3"\nkey = "k"', ['state.bucket is required with backend = "s3"']),
        ('backend = "s3"\nbucket = "b"', ['state.key is required with backend = "s3"']),
        ('backend = "postgres"\nschema = "my-schema"', ["prod.toml:3: state.schema must be letters, digits"]),
        ('backend = "postgres"\nname = "1prod"', ["prod.toml:3: state.name must be letters"]),
        ('backend = "postgres"\nname = ""', ["state.name must not be empty"]),
        ('backend = "postgres"\nconn_str_env = "MY VAR"', ["state.conn_str_env must be an environment variable name"]),
        ('backend = "s3"\nbucket = "b"\nkey = "k"\nendpoint_url = "ftp://x"', ["state.endpoint_url must be an http"]),
        ('backend = "postgres"\nshema = "x"', ['3: unknown key "shema" in [state]', 'Did you mean "schema"?']),
    ],
)
def test_state_mistakes_name_file_line_and_key(tmp_path, state, expected):
    found = "\n".join(problems(tmp_path, f"[state]\n{state}\n"))
    for part in expected:
        assert part in found, found


@pytest.mark.parametrize(
    "secret",
    [
        "postgres://rl:hunter2-pw@db.internal/infra",
        "host=db.internal user=rl password=hunter2-pw",
        "rl:hunter2-pw@db.internal",
    ],
)
def test_a_connection_string_where_a_variable_name_belongs_is_refused_without_showing_it(tmp_path, secret):
    found = problems(tmp_path, f'[state]\nbackend = "postgres"\nconn_str_env = "{secret}"\n')
    assert len(found) == 1 and "prod.toml:3: state.conn_str_env looks like a connection string" in found[0]
    assert "hunter2" not in found[0]
    with pytest.raises(ConfigError) as caught:
        load_config_text(f'[state]\nbackend = "postgres"\nconn_str_env = "{secret}"\n' + JOB, tmp_path / "p.toml", {})
    assert "hunter2" not in f"{caught.value} {caught.value.detail}"


def test_credentials_in_the_endpoint_url_are_refused_without_showing_them(tmp_path):
    text = '[state]\nbackend = "s3"\nbucket = "b"\nkey = "k"\nendpoint_url = "https://AKIA:s3cr3t@minio:9000"\n'
    found = problems(tmp_path, text)
    assert len(found) == 1 and "must not hold credentials" in found[0] and "s3cr3t" not in found[0]


def test_a_remote_backend_needs_no_folder_for_a_local_file(tmp_path):
    """A config read from a pipe cannot keep a local state beside it; a shared backend does not need to."""
    text = '[state]\nbackend = "postgres"\n' + JOB
    report = validate_bytes(text.encode(), Path("/dev/stdin"), env={})
    assert report.valid, [d.message() for d in report.errors]
