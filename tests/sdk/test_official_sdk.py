"""The official fireworks-ai 1.2.30 training SDK against the served emulator (PROTOCOL.md §9).

Provisioning takes 0.2 s and the SDK polls every 0.1 s, so the whole file runs in
a few seconds. The trainer gateway defaults to the SDK's base_url, which is the
emulator itself. ``KEY`` is a customer key, as a Fireworks customer holds: the
shape and auto-shape paths work with it, the manual path (which always sends
``skipValidations=true``) needs ``SUPERUSER_KEY``, as on the real API (§6.4).
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest

# The official SDK is a test dependency (pyproject's `test` extra): a missing SDK
# must fail the suite, not skip the compatibility check.
from fireworks.training.sdk import TrainerJobConfig, TrainerJobManager  # noqa: E402
from fireworks.training.sdk.errors import TrainingAPIError  # noqa: E402

from rlorinfra.controlplane.app import make_app
from rlorinfra.controlplane.server import ServedEmulator, serve_in_thread
from rlorinfra.controlplane.store import Store

KEY = "sdk-test-key"
SUPERUSER_KEY = "sdk-superuser-key"
QWEN8B = "accounts/fireworks/models/qwen3-8b"
POLICY_SHAPE = "accounts/fireworks/trainingShapes/ts-qwen3-8b-policy"
POLL = 0.1


@pytest.fixture(autouse=True)
def _default_gateway(monkeypatch):
    monkeypatch.delenv("FIREWORKS_TRAINER_GATEWAY_URL", raising=False)


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Store:
    return Store(tmp_path_factory.mktemp("sdk") / "cp.sqlite3", provision_seconds=0.2, settle_seconds=0.05)


@pytest.fixture(scope="module")
def served(store: Store) -> Iterator[ServedEmulator]:
    with serve_in_thread(make_app(store, api_key=KEY, superuser_keys=(SUPERUSER_KEY,))) as emulator:
        yield emulator


@pytest.fixture
def manager(served: ServedEmulator):
    return TrainerJobManager(api_key=KEY, base_url=served.url)


@pytest.fixture
def superuser_manager(served: ServedEmulator):
    return TrainerJobManager(api_key=SUPERUSER_KEY, base_url=served.url)


def shape_config(job_id: str, **kwargs) -> TrainerJobConfig:
    return TrainerJobConfig(
        base_model=QWEN8B, training_shape_ref=POLICY_SHAPE, requested_job_id=job_id, display_name=job_id, **kwargs
    )


def wait_for_state(manager, job_id: str, wanted: str) -> dict:
    for _ in range(200):
        job = manager.get(job_id)
        if job["state"] == wanted:
            return job
        time.sleep(0.02)
    raise AssertionError(f"{job_id} never reached {wanted}")


def test_account_is_resolved_from_the_key(manager):
    assert manager.account_id == "local"


def test_wrong_key_fails_at_account_resolution(served):
    bad = TrainerJobManager(api_key="wrong", base_url=served.url)
    with pytest.raises(httpx.HTTPStatusError) as info:
        _ = bad.account_id
    assert info.value.response.status_code == 401


def test_create_and_wait_on_the_shape_path(manager, served):
    endpoint = manager.create_and_wait(shape_config("sdk-shape"), poll_interval_s=POLL)
    assert endpoint.job_id == "sdk-shape"
    assert endpoint.job_name == "accounts/local/rlorTrainerJobs/sdk-shape"
    assert endpoint.base_url == f"{served.url}/training/v1/rlorTrainerJobs/local/sdk-shape"
    assert endpoint.max_context_length == 32768
    job = manager.get("sdk-shape")
    assert job["state"] == "JOB_STATE_RUNNING"
    assert "trainingShape" not in job  # sent as a query parameter, not a returned field (§3.5)
    assert job["trainingConfig"]["maxContextLength"] == 32768 and job["nodeCount"] == 1
    assert set(job["acceleratorSeconds"]) == {"NVIDIA_H200_141GB"}


def manual_config(job_id: str) -> TrainerJobConfig:
    return TrainerJobConfig(
        base_model=QWEN8B,
        accelerator_type="NVIDIA_H100_80GB",
        accelerator_count=4,
        node_count=2,
        max_context_length=8192,
        requested_job_id=job_id,
        extra_args=["--flag value"],
    )


def test_create_and_wait_on_the_manual_path_with_a_superuser_key(superuser_manager, store: Store):
    endpoint = superuser_manager.create_and_wait(manual_config("sdk-manual"), poll_interval_s=POLL)
    assert endpoint.max_context_length == 8192
    job = superuser_manager.get("sdk-manual")
    assert job["nodeCount"] == 2
    assert "acceleratorType" not in job["trainingConfig"] and "extraArgs" not in job["trainingConfig"]
    assert set(job["acceleratorSeconds"]) == {"NVIDIA_H100_80GB"}
    stored = store._conn().execute("SELECT echo FROM jobs WHERE job_id = 'sdk-manual'").fetchone()[0]
    assert '"extraArgs": ["--flag", "value"]' in stored  # kept, just not answered


def test_the_manual_path_with_a_customer_key_is_a_400(manager):
    with pytest.raises(TrainingAPIError) as info:
        manager.create(manual_config("sdk-manual-customer"))
    assert info.value.status_code == 400
    assert "requires a superuser API key" in str(info.value)
    assert manager.try_get("sdk-manual-customer") is None


def test_create_and_wait_on_the_auto_shape_path(manager):
    config = TrainerJobConfig(
        base_model=QWEN8B, auto_select_training_shape=True, max_context_length=4096, requested_job_id="sdk-auto"
    )
    endpoint = manager.create_and_wait(config, poll_interval_s=POLL)
    assert endpoint.job_id == "sdk-auto"
    assert endpoint.max_context_length == 32768  # filled by the server from the selected shape version


def test_wait_for_existing(manager):
    manager.create(shape_config("sdk-existing"))
    endpoint = manager.wait_for_existing("sdk-existing", poll_interval_s=POLL)
    assert endpoint.job_id == "sdk-existing"


def test_duplicate_create_adopts_the_existing_job(manager):
    first = manager.create(shape_config("sdk-dup"))
    second = manager.create(shape_config("sdk-dup"))
    assert first.job_name == second.job_name == "accounts/local/rlorTrainerJobs/sdk-dup"


def test_resume_and_wait_after_cancel(manager, served):
    manager.create_and_wait(shape_config("sdk-resume"), poll_interval_s=POLL)
    with httpx.Client(verify=False, base_url=served.url, headers={"X-Api-Key": KEY}) as c:
        assert c.post("/v1/accounts/local/rlorTrainerJobs/sdk-resume:cancel", json={}).status_code == 200
    wait_for_state(manager, "sdk-resume", "JOB_STATE_CANCELLED")
    endpoint = manager.resume_and_wait("sdk-resume", poll_interval_s=POLL)
    assert endpoint.job_id == "sdk-resume"
    assert manager.get("sdk-resume")["state"] == "JOB_STATE_RUNNING"


def test_reconnect_and_wait_after_preemption(manager, store: Store):
    manager.create_and_wait(shape_config("sdk-preempt"), poll_interval_s=POLL)
    preempted = store.preempt("sdk-preempt")
    assert preempted["status"] == {"code": "UNAVAILABLE", "message": "pod preempted"}
    endpoint = manager.reconnect_and_wait("sdk-preempt", poll_interval_s=POLL)
    assert endpoint.job_id == "sdk-preempt"
    assert manager.get("sdk-preempt")["state"] == "JOB_STATE_RUNNING"


def test_failed_job_aborts_waiting_with_its_status(manager, store: Store):
    manager.create(shape_config("sdk-fail"))
    store.fail("sdk-fail", message="CUDA error: out of memory")
    with pytest.raises(Exception, match="out of memory"):
        manager.wait_for_existing("sdk-fail", poll_interval_s=POLL)


def test_unhealthy_trainer_is_not_ready(manager, store: Store):
    manager.create_and_wait(shape_config("sdk-sick"), poll_interval_s=POLL)
    store.mark_unhealthy("sdk-sick")
    with pytest.raises(TimeoutError):
        manager.wait_for_existing("sdk-sick", poll_interval_s=POLL, timeout_s=0.5)


def test_delete_then_recreate_with_the_same_id_is_refused(manager):
    manager.create(shape_config("sdk-delete"))
    manager.delete("sdk-delete")
    assert manager.get("sdk-delete")["state"] in ("JOB_STATE_DELETING", "JOB_STATE_ARCHIVED")
    wait_for_state(manager, "sdk-delete", "JOB_STATE_ARCHIVED")
    with pytest.raises(RuntimeError, match="cannot be recreated with the same ID"):
        manager.create(shape_config("sdk-delete"))


def test_resolve_training_profile(manager):
    profile = manager.resolve_training_profile(POLICY_SHAPE)
    assert profile.training_shape_version == f"{POLICY_SHAPE}/versions/v2"
    assert profile.training_shape == POLICY_SHAPE
    assert profile.accelerator_type == "NVIDIA_H200_141GB"
    assert profile.accelerator_count == 8
    assert profile.node_count == 1
    assert profile.max_supported_context_length == 32768
    assert profile.pipeline_parallelism == 1
    assert profile.trainer_mode == "POLICY_TRAINER"
    pinned = manager.resolve_training_profile(f"{POLICY_SHAPE}/versions/v1")
    assert pinned.training_shape_version == f"{POLICY_SHAPE}/versions/v1"
    lora = manager.resolve_training_profile("accounts/fireworks/trainingShapes/ts-qwen3-8b-lora")
    assert lora.supports_lora


def test_unknown_shape_is_a_clear_error_not_a_retry_loop(manager):
    # 404 / 400 (a 5xx would make the SDK retry for minutes)
    with pytest.raises(RuntimeError, match="not found"):
        manager.resolve_training_profile("accounts/fireworks/trainingShapes/no-such-shape")
    with pytest.raises(Exception, match="not found") as info:
        manager.create(TrainerJobConfig(base_model=QWEN8B, training_shape_ref="accounts/fireworks/trainingShapes/nope"))
    assert getattr(info.value, "status_code", 400) == 400
