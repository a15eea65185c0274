"""The official fireworks-ai 1.2.30 SDK's ``DeploymentManager`` against the served emulator (PROTOCOL.md §10.11).

Provisioning and settling take a fraction of a second and the SDK is told to poll
every 0.1 s, so the file runs in a few seconds; only the SDK's fixed 2 s deletion
poll inside ``create_or_get`` costs one wait. Hot-load and probe calls go to the
emulator itself (the SDK's default ``hotload_api_url`` / ``inference_url``).
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest

# The official SDK is a test dependency: a missing SDK must fail the suite, not skip it.
from fireworks.training.sdk import DeploymentConfig, DeploymentManager  # noqa: E402

from rlorinfra.controlplane.app import make_app
from rlorinfra.controlplane.deployments import trainer_bucket_url
from rlorinfra.controlplane.server import ServedEmulator, serve_in_thread
from rlorinfra.controlplane.store import Store

KEY = "sdk-test-key"
QWEN8B = "accounts/fireworks/models/qwen3-8b"
SHAPE = "accounts/fireworks/deploymentShapes/qwen3-8b-policy"
POLL = 0.1


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Store:
    return Store(tmp_path_factory.mktemp("sdkdep") / "cp.sqlite3", provision_seconds=0.2, settle_seconds=0.1)


@pytest.fixture(scope="module")
def served(store: Store) -> Iterator[ServedEmulator]:
    with serve_in_thread(make_app(store, api_key=KEY)) as emulator:
        yield emulator


@pytest.fixture
def manager(served: ServedEmulator) -> DeploymentManager:
    return DeploymentManager(api_key=KEY, base_url=served.url)


def trainer(served: ServedEmulator, job_id: str) -> str:
    """A trainer created on the shape path (it may still be CREATING when a deployment names it)."""
    answer = httpx.post(
        f"{served.url}/v1/accounts/local/rlorTrainerJobs",
        params={"trainingShape": "accounts/fireworks/trainingShapes/ts-qwen3-8b-policy", "rlorTrainerJobId": job_id},
        json={"serviceMode": True, "trainingConfig": {"baseModel": QWEN8B}},
        headers={"X-Api-Key": KEY},
    )
    assert answer.status_code == 200, answer.text
    return f"accounts/local/rlorTrainerJobs/{job_id}"


def config(dep_id: str, **kwargs) -> DeploymentConfig:
    return DeploymentConfig(deployment_id=dep_id, base_model=QWEN8B, deployment_shape=SHAPE, **kwargs)


def test_create_or_get_then_wait_for_ready_then_get(manager, served):
    name = trainer(served, "t-ready")
    info = manager.create_or_get(config("d-ready", hot_load_trainer_job=name))
    assert info.state == "CREATING" and info.hot_load_trainer_job == name
    ready = manager.wait_for_ready("d-ready", timeout_s=10, poll_interval_s=POLL)
    assert ready.state == "READY"
    got = manager.get("d-ready")
    assert got is not None and got.hot_load_bucket_url == trainer_bucket_url("local", "t-ready")
    assert got.deployment_shape_version.startswith(SHAPE + "/versions/") and got.base_model == QWEN8B
    assert manager.create_or_get(config("d-ready")).state == "READY"  # adopted as-is


def test_get_of_a_missing_deployment_is_none(manager):
    assert manager.get("d-none") is None


def test_reattach_trainer_waits_through_updating_to_the_new_trainer(manager, served):
    first, second = trainer(served, "t-a"), trainer(served, "t-b")
    manager.create_or_get(config("d-re", hot_load_trainer_job=first))
    info = manager.reattach_trainer(
        "d-re",
        base_model=QWEN8B,
        trainer_job_name=second,
        timeout_s=10,
        poll_interval_s=POLL,
        hot_load_transition_type="SYNC",
    )
    assert info.state == "READY" and info.hot_load_trainer_job == second
    assert info.hot_load_transition_type == "SYNC"
    assert info.hot_load_bucket_url == trainer_bucket_url("local", "t-b")


def test_hotload_and_status_through_the_emulator(manager):
    manager.create_or_get(config("d-hot"))
    manager.wait_for_ready("d-hot", timeout_s=10, poll_interval_s=POLL)
    manager.hotload("d-hot", QWEN8B, "snap-1")
    assert manager.wait_for_hotload("d-hot", QWEN8B, "snap-1", timeout_seconds=5, poll_interval=1)


def test_scale_to_zero_sets_both_replica_counts(manager, served):
    manager.create_or_get(config("d-zero"))
    manager.scale_to_zero("d-zero")
    raw = httpx.get(f"{served.url}/v1/accounts/local/deployments/d-zero", headers={"X-Api-Key": KEY}).json()
    assert raw["minReplicaCount"] == 0 and raw["maxReplicaCount"] == 0


def test_a_failed_deployment_is_deleted_and_recreated(manager, store: Store):
    manager.create_or_get(config("d-fail"))
    store.deployments.fail("d-fail")
    with pytest.raises(RuntimeError, match="FAILED"):
        manager.wait_for_ready("d-fail", timeout_s=5, poll_interval_s=POLL)
    info = manager.create_or_get(config("d-fail"))
    assert info.state == "CREATING"  # a fresh row, not the FAILED one nor a dying one


def test_delete_ends_in_404(manager):
    manager.create_or_get(config("d-del"))
    manager.delete("d-del")
    for _ in range(50):
        if manager.get("d-del") is None:
            return
        time.sleep(POLL)
    raise AssertionError("the deleted deployment never went away")
