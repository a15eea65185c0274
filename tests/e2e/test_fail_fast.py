"""The real CLI (``python -m rlorinfra`` in a subprocess) against a control plane
that is down, one that speaks plain http to an https:// URL, and a bad key:
each run says what is going on and ends with exit 1 instead of hanging.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.conftest import jobs_toml

KEY = "failfast-secret-key-0123456789"
KEY_ENV = "RLOR_FAILFAST_KEY"
RETRY_LINE = "retrying for up to"


def write_config(folder: Path, url: str) -> Path:
    """A config for one shape-path job against ``url``, with the key in KEY_ENV."""
    path = folder / "rlorinfra.toml"
    path.write_text(f'[control_plane]\nurl = "{url}"\napi_key_env = "{KEY_ENV}"\n' + jobs_toml("alpha"))
    return path


def run(config: Path, *args: str, key: str = KEY) -> subprocess.CompletedProcess:
    """``rlorinfra plan -f CONFIG ARGS`` as a user would run it."""
    env = {**os.environ, KEY_ENV: key, "NO_COLOR": "1"}
    cmd = [sys.executable, "-m", "rlorinfra", "plan", "-f", str(config), *args]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60, cwd=config.parent)


def assert_secret_kept(result: subprocess.CompletedProcess) -> None:
    assert KEY.strip() not in result.stdout + result.stderr
    assert "Traceback" not in result.stderr


def test_plan_against_a_closed_loopback_port_announces_the_retry_then_fails(tmp_path):
    result = run(write_config(tmp_path, "http://127.0.0.1:9"))
    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stderr.count(RETRY_LINE) == 1, result.stderr
    assert "control plane unreachable (connection refused), retrying for up to 10s..." in result.stderr
    assert "Error:" in result.stderr and "Could not reach the control plane at http://127.0.0.1:9" in result.stderr
    assert_secret_kept(result)


def test_debug_traces_every_attempt_and_every_delay(tmp_path):
    config = write_config(tmp_path, "http://127.0.0.1:9")
    env = {**os.environ, KEY_ENV: KEY, "NO_COLOR": "1"}
    traced = subprocess.run([sys.executable, "-m", "rlorinfra", "--debug", "plan", "-f", str(config)], env=env,
                            capture_output=True, text=True, timeout=60, cwd=tmp_path)  # fmt: skip
    assert traced.returncode == 1
    lines = traced.stderr.splitlines()
    attempts = [line for line in lines if line.startswith("[http] GET ") and "connection refused" in line]
    retries = [line for line in lines if line.startswith("[http] retry ")]
    assert len(attempts) >= 2 and len(retries) == len(attempts) - 1, traced.stderr
    assert traced.stderr.count(RETRY_LINE) == 1
    assert KEY not in traced.stdout + traced.stderr  # --debug adds a traceback, never the key


@pytest.fixture
def plain_http_emulator(tmp_path):
    """A served emulator speaking plain http on a loopback port."""
    from rlorinfra.controlplane.app import make_app
    from rlorinfra.controlplane.server import serve_in_thread
    from rlorinfra.controlplane.store import Store

    server = serve_in_thread(make_app(Store(tmp_path / "cp.sqlite3"), api_key=KEY))
    yield server
    server.stop()


def test_https_against_a_plain_http_server_is_a_tls_error_without_retries(tmp_path, plain_http_emulator):
    url = plain_http_emulator.url.replace("http://", "https://", 1)
    folder = tmp_path / "ws"
    folder.mkdir()
    result = run(write_config(folder, url))
    assert result.returncode == 1, result.stdout + result.stderr
    assert "TLS error" in result.stderr and "http://" in result.stderr
    assert RETRY_LINE not in result.stderr
    assert_secret_kept(result)


def test_the_same_emulator_over_http_works(tmp_path, plain_http_emulator):
    folder = tmp_path / "ws"
    folder.mkdir()
    result = run(write_config(folder, plain_http_emulator.url))
    assert result.returncode == 0, result.stdout + result.stderr
    assert RETRY_LINE not in result.stderr


def test_a_key_with_a_trailing_newline_is_refused_naming_the_variable(tmp_path, plain_http_emulator):
    folder = tmp_path / "ws"
    folder.mkdir()
    result = run(write_config(folder, plain_http_emulator.url), key=KEY + "\n")
    assert result.returncode == 1
    assert f"The API key in the environment variable {KEY_ENV} ends with a newline" in result.stderr
    assert_secret_kept(result)


def test_plain_http_to_a_dot_localhost_name_is_refused(tmp_path):
    result = run(write_config(tmp_path, "http://evil.localhost:8765"))
    assert result.returncode == 1
    assert "Refusing to send the API key over plain HTTP to evil.localhost" in result.stderr
    assert RETRY_LINE not in result.stderr
