"""``rlorinfra control-plane``: serve in a real subprocess, fault commands served and embedded.

``serve`` exits 0 on Ctrl-C (SIGINT) or SIGTERM: stopping is how a server ends.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from rlorinfra.controlplane.store import Store
from tests.conftest import run_cli
from tests.controlplane.helpers import JOBS, KEY, POLICY_SHAPE, body


def start_server(tmp_path: Path, *args: str) -> tuple[subprocess.Popen, str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "NO_COLOR": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "rlorinfra", "control-plane", "serve", "--port", "0",
         "--db", str(tmp_path / "served.sqlite3"), "--provision-seconds", "0.05", *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path,
    )
    line = proc.stdout.readline()
    match = re.search(r"http://127\.0\.0\.1:(\d+)", line)
    assert match, (line, proc.poll())
    assert match.group(1) != "0"
    return proc, match.group(0)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_serve_prints_its_url_serves_and_stops_cleanly(tmp_path: Path, sig):
    proc, url = start_server(tmp_path)
    try:
        with httpx.Client(verify=False, base_url=url, headers=KEY) as c:
            assert c.get("/v1/accounts").json()["accounts"][0]["name"] == "accounts/local"
            created = c.post(JOBS, params={"trainingShape": POLICY_SHAPE, "rlorTrainerJobId": "sub-1"}, json=body())
            assert created.status_code == 200
    finally:
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    assert "Stopping the emulator." in out
    assert "Traceback" not in err
    assert (tmp_path / "served.sqlite3").exists()


def test_serve_options_key_account_and_faults(tmp_path: Path):
    proc, url = start_server(tmp_path, "--api-key", "k2", "--account-id", "acme", "--rate-limit-rate", "1",
                             "--retry-after", "3")
    try:
        with httpx.Client(verify=False, base_url=url) as c:
            assert c.get("/v1/accounts", headers=KEY).status_code == 401
            limited = c.get("/v1/accounts", headers={"X-Api-Key": "k2"})
            assert limited.status_code == 429 and limited.headers["retry-after"] == "3"
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=20)
    assert proc.returncode == 0


def test_serve_reports_a_busy_port(tmp_path: Path, served):
    port = served.url.rsplit(":", 1)[1]
    result = run_cli(["control-plane", "serve", "--port", port, "--db", str(tmp_path / "x.sqlite3")])
    assert result.exit_code == 1
    assert "Cannot listen on 127.0.0.1:" + port in result.stderr


def test_preempt_against_a_served_emulator(served, real_store: Store, served_client):
    served_client.post(JOBS, params={"trainingShape": POLICY_SHAPE, "rlorTrainerJobId": "remote"}, json=body())
    result = run_cli(["control-plane", "preempt", "remote", "--url", served.url, "--api-key", "local"])
    assert result.exit_code == 0, result.output
    assert "JOB_STATE_FAILED" in result.stdout and "pod preempted" in result.stdout
    assert real_store.get_job("remote")["status"]["message"] == "pod preempted"


def test_fault_key_comes_from_the_environment(served, served_client):
    served_client.post(JOBS, params={"trainingShape": POLICY_SHAPE, "rlorTrainerJobId": "envkey"}, json=body())
    ok = run_cli(["control-plane", "mark-unhealthy", "envkey", "--url", served.url, "--json"],
                 env={"FIREWORKS_API_KEY": "local"})
    assert ok.exit_code == 0, ok.output
    assert '"state": "JOB_STATE_' in ok.stdout
    wrong = run_cli(["control-plane", "preempt", "envkey", "--url", served.url], env={"FIREWORKS_API_KEY": "bad"})
    assert wrong.exit_code == 1
    assert "Traceback" not in wrong.output


def test_unknown_job_against_a_served_emulator(served):
    result = run_cli(["control-plane", "preempt", "nope", "--url", served.url, "--api-key", "local"])
    assert result.exit_code == 1
    assert "Error:" in result.stderr


@pytest.fixture
def embedded_config(tmp_path: Path) -> Path:
    config = tmp_path / "rlorinfra.toml"
    config.write_text('[control_plane]\nurl = "local"\n')
    store = Store(tmp_path / ".rlorinfra" / "control-plane.sqlite3", provision_seconds=0)
    store.create_job(body(), {"trainingShape": POLICY_SHAPE, "rlorTrainerJobId": "local-1"})
    assert store.get_job("local-1")["state"] == "JOB_STATE_RUNNING"
    return config


@pytest.mark.parametrize("command,state", [
    ("preempt", "JOB_STATE_FAILED"),
    ("fail", "JOB_STATE_FAILED"),
    ("set-idle", "JOB_STATE_IDLE"),
    ("mark-unhealthy", "JOB_STATE_RUNNING"),
])
def test_faults_on_the_embedded_emulator(embedded_config: Path, command: str, state: str):
    result = run_cli(["control-plane", command, "local-1", "-f", str(embedded_config)])
    assert result.exit_code == 0, result.output
    assert state in result.stdout
    store = Store(embedded_config.parent / ".rlorinfra" / "control-plane.sqlite3")
    assert store.get_job("local-1")["state"] == state


def test_fail_with_a_message(embedded_config: Path):
    result = run_cli(["control-plane", "fail", "local-1", "-f", str(embedded_config), "--message", "disk full"])
    assert result.exit_code == 0
    assert "INTERNAL: disk full" in result.stdout


def test_embedded_fault_errors(embedded_config: Path, tmp_path: Path):
    missing = run_cli(["control-plane", "preempt", "nope", "-f", str(embedded_config)])
    assert missing.exit_code == 1 and "No job nope" in missing.stderr
    run_cli(["control-plane", "preempt", "local-1", "-f", str(embedded_config)])
    twice = run_cli(["control-plane", "preempt", "local-1", "-f", str(embedded_config)])
    assert twice.exit_code == 1 and "JOB_STATE_FAILED" in twice.stderr
    remote = tmp_path / "remote.toml"
    remote.write_text('[control_plane]\nurl = "https://api.fireworks.ai"\n')
    refused = run_cli(["control-plane", "preempt", "local-1", "-f", str(remote)])
    assert refused.exit_code == 1 and "does not use the embedded emulator" in refused.stderr
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    (fresh / "rlorinfra.toml").write_text('[control_plane]\nurl = "local"\n')
    no_db = run_cli(["control-plane", "preempt", "x", "-f", str(fresh / "rlorinfra.toml")])
    assert no_db.exit_code == 1 and "no database yet" in no_db.stderr


@pytest.mark.parametrize("args,message", [(["--api-key", ""], "--api-key must not be empty"),
                                          (["--account-id", "a/b"], "Invalid --account-id")])
def test_serve_rejects_bad_options(tmp_path: Path, args, message):
    result = run_cli(["control-plane", "serve", "--port", "0", "--db", str(tmp_path / "x.sqlite3"), *args])
    assert result.exit_code == 1 and message in result.stderr
