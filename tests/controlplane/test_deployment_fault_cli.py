"""``rlorinfra control-plane fail-deployment``: embedded (-f) and served (--url), one fault table."""

from __future__ import annotations

from pathlib import Path

from rlorinfra.controlplane.store import Store
from tests.conftest import run_cli
from tests.controlplane.test_deployments import DEPS, dep_body


def embedded(tmp_path: Path) -> tuple[Path, Store]:
    config = tmp_path / "rlorinfra.toml"
    config.write_text('[control_plane]\nurl = "local"\n')
    store = Store(tmp_path / ".rlorinfra" / "control-plane.sqlite3", provision_seconds=0)
    store.deployments.create(dep_body(), {"deploymentId": "serve-1"}, superuser=False)
    return config, store


def test_fail_deployment_on_the_embedded_emulator(tmp_path: Path):
    config, store = embedded(tmp_path)
    result = run_cli(["control-plane", "fail-deployment", "serve-1", "-f", str(config), "--message", "OOM"])
    assert result.exit_code == 0, result.output
    assert "Failed deployment serve-1: now FAILED (INTERNAL: OOM)." in result.stdout
    assert store.deployments.get("serve-1")["state"] == "FAILED"


def test_fail_deployment_errors_on_the_embedded_emulator(tmp_path: Path):
    config, store = embedded(tmp_path)
    missing = run_cli(["control-plane", "fail-deployment", "nope", "-f", str(config)])
    assert missing.exit_code == 1 and "No deployment nope" in missing.stderr
    store.deployments.delete("serve-1")
    refused = run_cli(["control-plane", "fail-deployment", "serve-1", "-f", str(config)])
    assert refused.exit_code == 1 and "Cannot fail-deployment deployment serve-1" in refused.stderr


def test_fail_deployment_against_a_served_emulator(served, real_store: Store, served_client):
    assert served_client.post(DEPS, params={"deploymentId": "remote"}, json=dep_body()).status_code == 200
    args = ["control-plane", "fail-deployment", "remote", "--url", served.url, "--api-key", "local", "--json"]
    result = run_cli(args)
    assert result.exit_code == 0, result.output
    assert '"state": "FAILED"' in result.stdout
    assert real_store.deployments.get("remote")["state"] == "FAILED"
