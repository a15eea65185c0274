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
from tests.controlplane.helpers import INSTANCE_HEADER, JOBS, KEY, POLICY_SHAPE, body


def start_server(tmp_path: Path, *args: str, provision: bool = True) -> tuple[subprocess.Popen, str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "NO_COLOR": "1"}
    timing = ["--provision-seconds", "0.05"] if provision else []
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "rlorinfra",
            "control-plane",
            "serve",
            "--port",
            "0",
            "--db",
            str(tmp_path / "served.sqlite3"),
            *timing,
            *args,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    line = proc.stdout.readline()
    match = re.search(r"http://127\.0\.0\.1:(\d+)", line)
    assert match, (line, proc.poll(), proc.stderr.read() if proc.poll() is not None else "")
    assert match.group(1) != "0"
    proc.banner = line + proc.stdout.readline() + proc.stdout.readline()  # type: ignore[attr-defined]
    return proc, match.group(0)


def stop_server(proc: subprocess.Popen) -> str:
    """Stop it with Ctrl-C; its banner and the rest of its output."""
    proc.send_signal(signal.SIGINT)
    out, _err = proc.communicate(timeout=20)
    assert proc.returncode == 0
    return proc.banner + out  # type: ignore[attr-defined]


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
    proc, url = start_server(
        tmp_path, "--api-key", "k2", "--account-id", "acme", "--rate-limit-rate", "1", "--retry-after", "3"
    )
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
    ok = run_cli(
        ["control-plane", "mark-unhealthy", "envkey", "--url", served.url, "--json"], env={"FIREWORKS_API_KEY": "local"}
    )
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


@pytest.mark.parametrize(
    "command,state",
    [
        ("preempt", "JOB_STATE_FAILED"),
        ("fail", "JOB_STATE_FAILED"),
        ("set-idle", "JOB_STATE_IDLE"),
        ("mark-unhealthy", "JOB_STATE_RUNNING"),
    ],
)
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
    remote.write_text('[control_plane]\nurl = "https://api.fireworks.ai"\napi_key_env = "NO_SUCH_KEY_VAR"\n')
    refused = run_cli(["control-plane", "preempt", "local-1", "-f", str(remote)])
    assert refused.exit_code == 1 and "NO_SUCH_KEY_VAR" in refused.stderr
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    (fresh / "rlorinfra.toml").write_text('[control_plane]\nurl = "local"\n')
    no_db = run_cli(["control-plane", "preempt", "x", "-f", str(fresh / "rlorinfra.toml")])
    assert no_db.exit_code == 1 and "no database yet" in no_db.stderr


@pytest.mark.parametrize(
    "args,message",
    [
        (["--api-key", ""], "--api-key must not be empty"),
        (["--account-id", "a/b"], "Invalid --account-id"),
        (["--error-rate", "nan"], "Invalid value for '--error-rate'"),
        (["--rate-limit-rate", "1.5"], "Invalid value for '--rate-limit-rate'"),
        (["--latency-ms", "inf"], "Invalid value for '--latency-ms'"),
        (["--provision-seconds", "nan"], "Invalid value for '--provision-seconds'"),
    ],
)
def test_serve_rejects_bad_options(tmp_path: Path, args, message):
    result = run_cli(["control-plane", "serve", "--port", "0", "--db", str(tmp_path / "x.sqlite3"), *args])
    assert result.exit_code == 1 and message in result.stderr


# -- serve: keys, echo, -f CONFIG ----------------------------------------------------------


def test_serve_customer_and_superuser_keys(tmp_path: Path):
    proc, url = start_server(tmp_path, "--superuser-key", "root", "--superuser-key", "root2")
    manual = {"skipValidations": "true", "rlorTrainerJobId": "m1"}
    try:
        with httpx.Client(verify=False, base_url=url) as c:
            refused = c.post(JOBS, params=manual, json=body(), headers=KEY)
            assert refused.status_code == 400
            assert "skipValidations requires a superuser API key" in refused.json()["error"]["message"]
            for key in ("root", "root2"):
                assert c.get("/v1/accounts", headers={"X-Api-Key": key}).status_code == 200
            created = c.post(JOBS, params=manual, json=body(), headers={"X-Api-Key": "root"})
            assert created.status_code == 200
            assert "trainingShape" not in created.json() and "updateTime" not in created.json()
            assert created.headers[INSTANCE_HEADER] == Store(tmp_path / "served.sqlite3").instance_id
    finally:
        out = stop_server(proc)
    assert "2 superuser key(s)" in out and "returned fields only" in out


def test_serve_echo_create_fields(tmp_path: Path):
    proc, url = start_server(tmp_path, "--echo-create-fields")
    try:
        with httpx.Client(verify=False, base_url=url, headers=KEY) as c:
            job = c.post(JOBS, params={"trainingShape": POLICY_SHAPE}, json=body(trainerReplicaCount=2)).json()
    finally:
        out = stop_server(proc)
    assert job["trainingShape"] == POLICY_SHAPE and job["trainerReplicaCount"] == 2 and "updateTime" in job
    assert "echoing create fields" in out


def test_serve_takes_the_emulator_settings_of_the_f_config(tmp_path: Path):
    config = tmp_path / "rlorinfra.toml"
    config.write_text(
        '[control_plane]\nurl = "local"\n\n[control_plane.emulator]\nprovision_seconds = 7.5\ncapacity = 3\n'
    )
    proc, _url = start_server(tmp_path, "-f", str(config), provision=False)
    out = stop_server(proc)
    assert "provisioning 7.5s, capacity 3 accelerators" in out
    settings = Store(tmp_path / "served.sqlite3").settings()
    assert (settings["provision_seconds"], settings["capacity"]) == ("7.5", "3")
    proc, _url = start_server(
        tmp_path, "-f", str(config), "--capacity", "5", "--db", str(tmp_path / "b.sqlite3"), provision=False
    )
    assert "provisioning 7.5s, capacity 5 accelerators" in stop_server(proc)  # flags win
    proc, _url = start_server(tmp_path, "--db", str(tmp_path / "c.sqlite3"), provision=False)  # no -f: defaults
    assert "provisioning 2s, capacity 256 accelerators" in stop_server(proc)


def test_serve_f_with_a_broken_config_fails_clearly(tmp_path: Path):
    config = tmp_path / "bad.toml"
    config.write_text("[control_plane\n")
    result = run_cli(["control-plane", "serve", "--port", "0", "-f", str(config), "--db", str(tmp_path / "x.db")])
    assert result.exit_code != 0 and "Traceback" not in result.output


def test_serve_rejects_bad_superuser_keys(tmp_path: Path):
    for args, message in (
        (["--superuser-key", " "], "--superuser-key must not be empty"),
        (["--superuser-key", "local"], "also a --superuser-key"),
    ):
        result = run_cli(["control-plane", "serve", "--port", "0", "--db", str(tmp_path / "x.sqlite3"), *args])
        assert result.exit_code == 1 and message in result.stderr


# -- the new faults -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "command,state",
    [
        ("complete", "JOB_STATE_COMPLETED"),
        ("pause", "JOB_STATE_PAUSED"),
        ("early-stop", "JOB_STATE_EARLY_STOPPED"),
        ("expire", "JOB_STATE_EXPIRED"),
    ],
)
def test_new_stop_faults_on_the_embedded_emulator(embedded_config: Path, command: str, state: str):
    result = run_cli(["control-plane", command, "local-1", "-f", str(embedded_config)])
    assert result.exit_code == 0, result.output
    assert state in result.stdout
    store = Store(embedded_config.parent / ".rlorinfra" / "control-plane.sqlite3")
    job = store.get_job("local-1")
    assert job["state"] == state and "directRouteHandle" not in job


def test_flap_on_the_embedded_emulator(embedded_config: Path):
    import time

    db = embedded_config.parent / ".rlorinfra" / "control-plane.sqlite3"
    result = run_cli(["control-plane", "flap", "local-1", "-f", str(embedded_config), "--period", "0.05"])
    assert result.exit_code == 0, result.output
    assert "every 0.05s of RUNNING ends in FAILED" in result.stdout
    time.sleep(0.1)
    job = Store(db).get_job("local-1")
    assert job["state"] == "JOB_STATE_FAILED" and job["status"]["message"] == "trainer crashed (flapping)"
    off = run_cli(["control-plane", "flap", "local-1", "-f", str(embedded_config), "--off"])
    assert off.exit_code == 0 and "Stopped flapping job local-1" in off.stdout
    store = Store(db, provision_seconds=0)
    store.resume_job("local-1")
    time.sleep(0.1)
    assert store.get_job("local-1")["state"] == "JOB_STATE_RUNNING"
    for period in ("0", "nan", "inf", "-1"):
        bad = run_cli(["control-plane", "flap", "local-1", "-f", str(embedded_config), "--period", period])
        assert bad.exit_code == 1 and "Invalid value for '--period'" in bad.stderr, period


def test_drop_response_on_the_embedded_emulator(embedded_config: Path, tmp_path: Path):
    result = run_cli(["control-plane", "drop-response", "create", "--count", "2", "-f", str(embedded_config)])
    assert result.exit_code == 0, result.output
    assert "the next 2 successful create request(s)" in result.stdout
    assert Store(embedded_config.parent / ".rlorinfra" / "control-plane.sqlite3").armed_drops() == {"create": 2}
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    (fresh / "rlorinfra.toml").write_text('[control_plane]\nurl = "local"\n')
    early = run_cli(["control-plane", "drop-response", "delete", "--json", "-f", str(fresh / "rlorinfra.toml")])
    assert early.exit_code == 0, early.output  # armed before the first apply: the database is created
    assert '"operation": "delete"' in early.stdout
    wrong = run_cli(["control-plane", "drop-response", "list", "-f", str(embedded_config)])
    assert wrong.exit_code == 1 and "'list' is not one of" in wrong.stderr


def test_new_faults_against_a_served_emulator(served, real_store: Store, served_client):
    served_client.post(JOBS, params={"trainingShape": POLICY_SHAPE, "rlorTrainerJobId": "remote"}, json=body())
    flap = run_cli(["control-plane", "flap", "remote", "--url", served.url, "--period", "30", "--api-key", "local"])
    assert flap.exit_code == 0, flap.output
    assert real_store._conn().execute("SELECT flap_period FROM jobs WHERE job_id = 'remote'").fetchone()[0] == 30
    result = run_cli(["control-plane", "complete", "remote", "--url", served.url, "--api-key", "local"])
    assert result.exit_code == 0, result.output
    assert "Completed job remote: now JOB_STATE_COMPLETED" in result.stdout
    drop = run_cli(["control-plane", "drop-response", "resume", "--url", served.url, "--api-key", "local"])
    assert drop.exit_code == 0, drop.output
    assert real_store.armed_drops() == {"resume": 1}
    dropped = served_client.post(f"{JOBS}/remote:resume")
    assert dropped.status_code == 503
    assert real_store.get_job("remote")["state"] in ("JOB_STATE_CREATING", "JOB_STATE_RUNNING")


def test_faults_use_the_served_url_of_the_f_config(served, real_store: Store, served_client, tmp_path: Path):
    served_client.post(JOBS, params={"trainingShape": POLICY_SHAPE, "rlorTrainerJobId": "viacfg"}, json=body())
    config = tmp_path / "served.toml"
    config.write_text(f'[control_plane]\nurl = "{served.url}"\napi_key_env = "EMU_KEY"\n')
    result = run_cli(["control-plane", "preempt", "viacfg", "-f", str(config)], env={"EMU_KEY": "local"})
    assert result.exit_code == 0, result.output
    assert real_store.get_job("viacfg")["status"]["message"] == "pod preempted"
    drop = run_cli(["control-plane", "drop-response", "cancel", "-f", str(config)], env={"EMU_KEY": "local"})
    assert drop.exit_code == 0, drop.output
    assert real_store.armed_drops() == {"cancel": 1}
    missing = run_cli(["control-plane", "preempt", "viacfg", "-f", str(config)], env={"EMU_KEY": ""})
    assert missing.exit_code == 1 and "EMU_KEY" in missing.stderr
    wrong = run_cli(["control-plane", "pause", "viacfg", "-f", str(config)], env={"EMU_KEY": "bad"})
    assert wrong.exit_code == 1 and "Traceback" not in wrong.output


def test_drop_response_count_beyond_any_sane_number_is_a_usage_error(tmp_path):
    from tests.conftest import run_cli

    config = tmp_path / "rlorinfra.toml"
    config.write_text('[jobs.a]\nbase_model = "accounts/fireworks/models/qwen3-8b"\n')
    result = run_cli(["control-plane", "drop-response", "create", "--count", "9" * 30, "-f", str(config)])
    assert result.exit_code == 1 and "Traceback" not in result.output and "internal error" not in result.output
