"""`state unprotect ADDRESS` through the real CLI: clears `protected`, under the lock, bumping the serial."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from rlorinfra.model.address import Address
from rlorinfra.state.lock import lock_info_path
from rlorinfra.state.store import StateStore
from tests.state.state_samples import sample_state

CONFIG = """\
[jobs.trainer-a]
base_model = "accounts/fireworks/models/qwen3-8b"
training_shape = "ts-qwen3-8b-policy"
prevent_destroy = true

[state]
path = "team.state.json"
"""


@pytest.fixture
def project(tmp_path: Path):
    """A config, and its state with trainer-a and trainer-b both protected (serial 1)."""
    config = tmp_path / "prod.toml"
    config.write_text(CONFIG)
    store = StateStore(tmp_path / "team.state.json")
    state = sample_state()
    for name, record in state.jobs.items():
        state = state.with_job(name, dataclasses.replace(record, protected=True))
    store.write(state)
    return config, store


def test_unprotect_clears_the_flag_bumps_the_serial_and_releases_the_lock(cli, project):
    config, store = project
    serial = store.read().serial
    result = cli(["state", "unprotect", "job.trainer-b", "-f", config])
    assert result.exit_code == 0, result.output
    assert "Unprotected job.trainer-b" in result.stdout and result.stderr == ""
    state = store.read()
    assert (state.jobs["trainer-b"].protected, state.jobs["trainer-a"].protected) == (False, True)
    assert state.serial == serial + 1
    assert "protected" not in store.path.read_text().split('"trainer-b"')[1]  # written only when set
    assert not lock_info_path(store.path).exists()


def test_unprotect_of_a_declared_job_warns_that_apply_protects_it_again(cli, project):
    config, store = project
    result = cli(["state", "unprotect", "trainer-a", "-f", config])  # a bare name resolves too
    assert result.exit_code == 0 and "Unprotected job.trainer-a" in result.stdout
    assert "the next apply protects it again" in result.stderr


def test_unprotect_of_an_unprotected_or_unknown_resource_changes_nothing(cli, project):
    config, store = project
    assert cli(["state", "unprotect", "job.trainer-b", "-f", config]).exit_code == 0
    before = store.path.read_bytes()
    again = cli(["state", "unprotect", "job.trainer-b", "-f", config])
    assert again.exit_code == 0 and "is not protected in state; nothing to change" in again.stdout
    unknown = cli(["state", "unprotect", "deployment.nope", "-f", config])
    assert unknown.exit_code == 1 and "No deployment 'nope' in state" in unknown.stderr
    assert store.path.read_bytes() == before


def test_unprotect_fails_at_once_while_another_process_holds_the_lock(cli, project, lock_holder):
    config, store = project
    before = store.path.read_bytes()
    holder = lock_holder(store.path, "apply")
    result = cli(["state", "unprotect", "job.trainer-b", "-f", config])
    assert result.exit_code == 1 and result.stderr.startswith("Error: Error acquiring the state lock")
    assert "Operation: apply" in result.stderr and holder.info["id"] in result.stderr
    assert store.path.read_bytes() == before
    assert store.read().record(Address.job("trainer-b")).protected
