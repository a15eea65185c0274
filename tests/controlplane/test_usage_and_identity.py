"""acceleratorSeconds accrual (FakeClock), the returned-field whitelist, the emulator instance header."""

from __future__ import annotations

import uuid

import httpx
import pytest

from rlorinfra.controlplane.app import make_app
from rlorinfra.controlplane.requests import RETURNED_FIELDS, RETURNED_TRAINING_CONFIG_FIELDS
from rlorinfra.controlplane.server import serve_in_thread
from rlorinfra.controlplane.store import Store
from tests.controlplane.helpers import INSTANCE_HEADER, JOBS, KEY, POLICY_SHAPE, FakeClock, body, create

LLAMA = "accounts/fireworks/models/llama-v3p1-70b-instruct"
LLAMA_SHAPE = "accounts/fireworks/trainingShapes/ts-llama-v3p1-70b-policy"  # 2 nodes x 8 H100


def seconds(client: httpx.Client, job_id: str) -> dict[str, str]:
    return client.get(f"{JOBS}/{job_id}").json()["acceleratorSeconds"]


# -- acceleratorSeconds ---------------------------------------------------------------


def test_accelerator_seconds_accrue_only_while_running_or_idle(client, clock: FakeClock, store: Store):
    create(client, "j1")  # ts-qwen3-8b-policy: 8 x H200 x 1 node
    assert seconds(client, "j1") == {"NVIDIA_H200_141GB": "0"}
    clock.advance(10)  # CREATING does not count
    assert seconds(client, "j1") == {"NVIDIA_H200_141GB": "0"}
    clock.advance(5)
    assert seconds(client, "j1") == {"NVIDIA_H200_141GB": "40"}
    store.set_idle("j1")
    clock.advance(5)  # IDLE still holds the accelerators
    assert seconds(client, "j1") == {"NVIDIA_H200_141GB": "80"}
    client.post(f"{JOBS}/j1:cancel")
    clock.advance(100)  # CANCELLING and CANCELLED free them at once
    assert seconds(client, "j1") == {"NVIDIA_H200_141GB": "80"}
    client.post(f"{JOBS}/j1:resume")
    clock.advance(10)
    clock.advance(2.5)
    assert seconds(client, "j1") == {"NVIDIA_H200_141GB": "100"}
    listed = client.get(JOBS).json()["rlorTrainerJobs"]
    assert [j["acceleratorSeconds"] for j in listed] == [{"NVIDIA_H200_141GB": "100"}]
    store.preempt("j1")
    clock.advance(50)
    assert seconds(client, "j1") == {"NVIDIA_H200_141GB": "100"}
    client.delete(f"{JOBS}/j1")
    clock.advance(2)
    assert seconds(client, "j1") == {"NVIDIA_H200_141GB": "100"}  # the tombstone keeps the total


def test_accelerator_seconds_count_every_node(client, clock: FakeClock):
    create(client, "big", shape=LLAMA_SHAPE, trainingConfig={"baseModel": LLAMA})
    clock.advance(10 + 3)
    assert seconds(client, "big") == {"NVIDIA_H100_80GB": "48"}  # 8 x 2 nodes x 3 s


def test_accelerator_seconds_on_the_manual_and_auto_paths(client, root_client, clock: FakeClock):
    create(
        root_client,
        "manual",
        manual=True,
        nodeCount=3,
        trainingConfig={"acceleratorType": "NVIDIA_A100_80GB", "acceleratorCount": 2},
    )
    create(root_client, "default", manual=True, trainingConfig={"acceleratorCount": 1})
    create(client, "auto", shape=None, trainingConfig={"loraRank": 8})  # the LoRA shape: 2 x H100
    clock.advance(10 + 4)
    assert seconds(client, "manual") == {"NVIDIA_A100_80GB": "24"}
    assert seconds(client, "default") == {"NVIDIA_H100_80GB": "4"}
    assert seconds(client, "auto") == {"NVIDIA_H100_80GB": "8"}


def test_a_pending_job_accrues_nothing(client, clock: FakeClock):
    for i in range(5):  # capacity 64: four 16-accelerator jobs run, the fifth waits
        create(client, f"j{i}", shape=LLAMA_SHAPE, trainingConfig={"baseModel": LLAMA})
    clock.advance(10 + 7)
    assert client.get(f"{JOBS}/j4").json()["state"] == "JOB_STATE_PENDING"
    assert seconds(client, "j4") == {"NVIDIA_H100_80GB": "0"}
    assert seconds(client, "j0") == {"NVIDIA_H100_80GB": "112"}


def test_accelerator_seconds_are_computed_from_timestamps_across_stores(db_path, clock: FakeClock, client):
    create(client, "j1")
    clock.advance(20)
    other = Store(db_path, provision_seconds=10, capacity=64, clock=clock)
    assert other.get_job("j1")["acceleratorSeconds"] == {"NVIDIA_H200_141GB": "80"}


# -- returned fields ----------------------------------------------------------------------

EVERY_DECLARED = body(
    displayName="d",
    forwardOnly=True,
    hotLoadDeploymentId="dep",
    evaluationDataset="ev",
    evalAutoCarveout=True,
    lossConfig={"method": "GRPO"},
    rewardWeights=["a=1"],
    rolloutDeploymentName="r",
    usePurpose="pilot",
    wandbConfig={"enabled": False},
    awsS3Config={"iamRoleArn": "arn"},
    azureBlobStorageConfig={"tenantId": "t"},
    trainerReplicaCount=2,
    useReservation=False,
    reservationTarget="res",
    inactivityTimeout="600s",
    trainingConfig={
        "batchSize": 8,
        "batchSizeSamples": 2,
        "samplerCheckpointSaveIntervalSteps": 5,
        "epochs": 1,
        "gradientAccumulationSteps": 1,
        "jinjaTemplate": "t",
        "learningRateWarmupSteps": 0,
        "optimizerWeightDecay": 0.1,
        "outputModel": "m",
        "region": "US_IOWA_1",
        "warmStartFrom": "w",
        "customImageTag": "1.0",
        "projectionHeadDim": 3,
    },
)


def test_only_the_declared_fields_come_back(client, root_client, clock: FakeClock):
    sent = {**EVERY_DECLARED, "extraValues": {"k": "v"}}
    sent["trainingConfig"] = {**sent["trainingConfig"], "extraArgs": ["--x"]}
    job = root_client.post(JOBS, params={"trainingShape": POLICY_SHAPE, "rlorTrainerJobId": "all"}, json=sent).json()
    clock.advance(10)
    for resource in (job, client.get(f"{JOBS}/all").json(), client.get(JOBS).json()["rlorTrainerJobs"][0]):
        assert set(resource) <= RETURNED_FIELDS
        assert set(resource["trainingConfig"]) <= RETURNED_TRAINING_CONFIG_FIELDS
        for sent_only in (
            "trainerReplicaCount",
            "useReservation",
            "reservationTarget",
            "inactivityTimeout",
            "extraValues",
            "trainingShape",
            "updateTime",
        ):
            assert sent_only not in resource
    assert set(job["trainingConfig"]) == RETURNED_TRAINING_CONFIG_FIELDS
    running = client.get(f"{JOBS}/all").json()
    assert set(running) == RETURNED_FIELDS - {"completedTime", "jobProgress"}
    assert len(RETURNED_FIELDS) == 26 and len(RETURNED_TRAINING_CONFIG_FIELDS) == 15


def test_echo_mode_returns_everything_sent(db_path, clock: FakeClock):
    store = Store(db_path, provision_seconds=10, clock=clock)
    app = make_app(store, superuser_keys=("root",), echo_create_fields=True)
    sent = {**EVERY_DECLARED, "extraValues": {"k": "v"}}
    with httpx.Client(transport=httpx.WSGITransport(app=app), base_url="http://e", headers={"X-Api-Key": "root"}) as c:
        job = c.post(JOBS, params={"trainingShape": POLICY_SHAPE, "rlorTrainerJobId": "e"}, json=sent).json()
    for key, value in sent.items():
        if key != "trainingConfig":
            assert job[key] == value, key
    assert job["trainingConfig"] == {**sent["trainingConfig"], "maxContextLength": 32768}
    assert job["trainingShape"] == POLICY_SHAPE and "updateTime" in job and "acceleratorSeconds" in job


# -- instance identity ------------------------------------------------------------------------


def test_every_response_carries_the_instance_id(store: Store, client):
    instance = store.instance_id
    assert str(uuid.UUID(instance)) == instance and uuid.UUID(instance).version == 4
    responses = [
        client.get("/v1/accounts"),
        create(client, "j1"),
        client.get(f"{JOBS}/nope"),  # 404
        client.post(JOBS, json={}),  # 400
        client.put(JOBS),  # 405
        client.get("/v1/accounts", headers={"X-Api-Key": "wrong"}),  # 401
        client.get("/training/v1/rlorTrainerJobs/local/j1/api/v1/healthz"),  # 503
        client.post("/_emulator/faults", json={"jobId": "j1", "fault": "preempt"}),
    ]
    assert [r.status_code for r in responses] == [200, 200, 404, 400, 405, 401, 503, 200]
    assert {r.headers[INSTANCE_HEADER] for r in responses} == {instance}


@pytest.mark.parametrize("fault", ["error_rate", "rate_limit_rate"])
def test_injected_errors_carry_the_instance_id_too(store: Store, fault):
    app = make_app(store, **{fault: 1.0})
    with httpx.Client(transport=httpx.WSGITransport(app=app), base_url="http://e", headers=KEY) as c:
        response = c.get(JOBS)
    assert response.status_code in (429, 503)
    assert response.headers[INSTANCE_HEADER] == store.instance_id


def test_the_instance_id_is_stable_per_database_and_differs_between_them(tmp_path, db_path, store: Store):
    first = store.instance_id
    assert Store(db_path).instance_id == first
    assert Store(db_path, provision_seconds=9, capacity=1, account_id="other").instance_id == first
    assert store.settings()["instance_id"] == first
    other = Store(tmp_path / "other.sqlite3").instance_id
    assert other != first
    with (
        serve_in_thread(make_app(Store(db_path))) as served,
        httpx.Client(verify=False, base_url=served.url, headers=KEY) as c,
    ):
        assert c.get("/v1/accounts").headers[INSTANCE_HEADER] == first
        assert c.get("/nowhere").headers[INSTANCE_HEADER] == first


OLD_SCHEMA = """
CREATE TABLE settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE jobs (
    job_id TEXT PRIMARY KEY, display_name TEXT NOT NULL DEFAULT '', state TEXT NOT NULL,
    status_code TEXT NOT NULL DEFAULT 'OK', status_message TEXT NOT NULL DEFAULT '', echo TEXT NOT NULL,
    demand INTEGER NOT NULL, inactivity_s REAL NOT NULL, unhealthy INTEGER NOT NULL DEFAULT 0,
    create_time REAL NOT NULL, update_time REAL NOT NULL, completed_time REAL, due_at REAL, queue_seq INTEGER
);
"""


def test_a_database_of_the_previous_release_is_upgraded(tmp_path, clock: FakeClock):
    import json
    import sqlite3

    path = tmp_path / "old.sqlite3"
    conn = sqlite3.connect(path)
    conn.executescript(OLD_SCHEMA)
    echo = {
        "displayName": "",
        "trainingConfig": {"baseModel": "m", "extraArgs": ["--x"]},
        "nodeCount": 1,
        "trainingShape": POLICY_SHAPE,
        "useReservation": True,
    }
    start = clock.now
    conn.execute(
        "INSERT INTO jobs(job_id, state, echo, demand, inactivity_s, create_time, update_time, due_at)"
        " VALUES ('old', 'JOB_STATE_RUNNING', ?, 8, 60, ?, ?, ?)",
        (json.dumps(echo), start, start, start + 60),
    )
    conn.execute(
        "INSERT INTO jobs(job_id, state, echo, demand, inactivity_s, create_time, update_time)"
        " VALUES ('gone', 'JOB_STATE_DELETED', ?, 8, 60, ?, ?)",
        (json.dumps(echo), start, start),
    )
    conn.commit()
    conn.close()
    clock.advance(10)
    store = Store(path, clock=clock)
    assert uuid.UUID(store.instance_id).version == 4
    job = store.get_job("old")
    assert job["trainingConfig"] == {"baseModel": "m"} and "trainingShape" not in job
    assert job["acceleratorSeconds"] == {"NVIDIA_H100_80GB": "80"}
    assert store.get_job("gone")["state"] == "JOB_STATE_ARCHIVED"
    clock.advance(50)
    assert store.get_job("old")["state"] == "JOB_STATE_CANCELLED"  # its inactivity timer survived
