"""Deployments on the emulator (PROTOCOL.md §10.10): each route, state transition, fault and key rule."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import httpx
import pytest

from rlorinfra.controlplane.deployments import RETURNED_FIELDS, trainer_bucket_url
from rlorinfra.controlplane.store import Store
from tests.controlplane.helpers import QWEN8B, FakeClock, create

DEPS = "/v1/accounts/local/deployments"
SHAPE = "accounts/fireworks/deploymentShapes/qwen3-8b-policy"
ALWAYS = {"name", "state", "status", "replicaCount", "desiredReplicaCount", "createTime", "updateTime"}


def dep_body(**fields) -> dict:
    """A create body as the SDK's ``_build_deployment_body`` sends it (shape path)."""
    return {
        "baseModel": QWEN8B,
        "description": "Fireworks training deployment",
        "minReplicaCount": 0,
        "maxReplicaCount": 1,
        "enableHotLoad": True,
        "forTraining": False,
        "hotLoadBucketType": "FW_HOSTED",
        "deploymentShape": SHAPE,
        **fields,
    }


def create_dep(client: httpx.Client, dep_id: str, **fields) -> httpx.Response:
    return client.post(DEPS, params={"deploymentId": dep_id}, json=dep_body(**fields))


def trainer(client: httpx.Client, job_id: str = "tr1") -> str:
    assert create(client, job_id).status_code == 200
    return f"accounts/local/rlorTrainerJobs/{job_id}"


def test_create_answers_creating_then_ready_after_the_provision_delay(client, clock: FakeClock):
    created = create_dep(client, "d1")
    assert created.status_code == 200, created.text
    assert created.json()["state"] == "CREATING"
    assert created.json()["deploymentShape"].startswith(SHAPE + "/versions/")  # a version is stored
    clock.advance(9)
    assert client.get(f"{DEPS}/d1").json()["state"] == "CREATING"
    clock.advance(2)
    got = client.get(f"{DEPS}/d1").json()
    assert got["state"] == "READY" and got["replicaCount"] == 1
    assert got["hotLoadTransitionType"] == "ASYNC"  # the control plane's pick for hot-load deployments


def test_responses_carry_only_fields_the_real_api_returns(root_client):
    sent_only = {"extraArgs": ["--x"], "extraValues": {"a": "b"}, "annotations": {"k": "v"}, "preemptible": True}
    sent = dep_body(forTraining=True, **sent_only)
    answer = root_client.post(DEPS, params={"deploymentId": "d1"}, json=sent).json()
    assert set(answer) <= RETURNED_FIELDS | ALWAYS
    for sent_only in ("forTraining", "extraArgs", "extraValues", "annotations", "preemptible"):
        assert sent_only not in answer


def test_an_existing_id_is_409_even_while_deleting(client):
    create_dep(client, "d1")
    assert create_dep(client, "d1").status_code == 409
    client.delete(f"{DEPS}/d1", params={"ignoreChecks": "true", "hard": "true"})
    again = create_dep(client, "d1")
    assert again.status_code == 409 and again.json()["error"]["status"] == "ALREADY_EXISTS"


@pytest.mark.parametrize(
    ("fields", "query", "fragment"),
    [
        ({"acceleratorType": "NVIDIA_H200_141GB"}, {}, "acceleratorType"),
        ({"deploymentShape": None}, {}, "accelerator_type must be specified"),
        ({"deploymentShape": None, "acceleratorType": "UNSPECIFIED"}, {}, "accelerator_type must be specified"),
        ({}, {"acceptShapelessRisk": "true"}, "acceptShapelessRisk"),
        ({"hotLoadBucketUrl": "gs://b/x/", "hotLoadTrainerJob": "accounts/local/rlorTrainerJobs/t"}, {}, "conflicts"),
        ({"hotLoadTrainerJob": "accounts/local/rlorTrainerJobs/nope"}, {}, "not found"),
        ({"hotLoadTransitionType": "LATER"}, {}, "ASYNC or SYNC"),
        ({"baseModel": ""}, {}, "baseModel"),
    ],
)
def test_create_refuses_what_the_real_api_refuses(client, fields, query, fragment):
    answer = client.post(DEPS, params={"deploymentId": "d1", **query}, json=dep_body(**fields))
    assert answer.status_code == 400 and fragment in answer.json()["error"]["message"]
    assert client.get(f"{DEPS}/d1").status_code == 404  # nothing stored


def test_manual_path_with_an_accelerator_is_accepted(client):
    fields = {"deploymentShape": None, "acceleratorType": "NVIDIA_H200_141GB"}
    answer = client.post(DEPS, params={"deploymentId": "d1", "acceptShapelessRisk": "true"}, json=dep_body(**fields))
    assert answer.status_code == 200 and "deploymentShape" not in answer.json()


def test_superuser_fields_are_refused_with_a_customer_key(client, root_client):
    for field, value in (("extraArgs", ["--x"]), ("extraValues", {"a": "b"}), ("preemptible", True)):
        refused = create_dep(client, "d1", **{field: value})
        assert refused.status_code == 400 and "superuser" in refused.json()["error"]["message"]
    assert create_dep(root_client, "d1", extraArgs=["--x"]).status_code == 200


def test_validate_only_stores_nothing(client):
    answer = client.post(DEPS, params={"deploymentId": "d1", "validateOnly": "true"}, json=dep_body())
    assert answer.status_code == 200 and answer.json()["name"] == "accounts/local/deployments/d1"
    assert client.get(f"{DEPS}/d1").status_code == 404


def test_the_bucket_is_the_trainers_while_it_is_still_creating(client):
    name = trainer(client)
    assert client.get("/v1/accounts/local/rlorTrainerJobs/tr1").json()["state"] == "JOB_STATE_CREATING"
    answer = create_dep(client, "d1", hotLoadTrainerJob=name).json()
    assert answer["hotLoadTrainerJob"] == name
    assert answer["hotLoadBucketUrl"] == trainer_bucket_url("local", "tr1")
    assert create_dep(client, "d2", hotLoadTrainerJob=name).json()["hotLoadBucketUrl"] == answer["hotLoadBucketUrl"]


def test_without_a_trainer_the_bucket_is_the_deployments(client):
    assert create_dep(client, "d1").json()["hotLoadBucketUrl"].endswith("/rl-checkpoints/local/d1/")


def test_a_per_deployment_keyed_trainer_is_refused(client):
    assert create(client, "tr1", hotLoadDeploymentId="other").status_code == 200
    answer = create_dep(client, "d1", hotLoadTrainerJob="accounts/local/rlorTrainerJobs/tr1")
    assert answer.status_code == 400 and "hotload flow mismatch" in answer.json()["error"]["message"]


def test_list_pages_in_create_order_and_hides_deleted_rows(client, clock: FakeClock):
    for dep_id in ("dc", "da", "db"):
        create_dep(client, dep_id)
        clock.advance(1)
    first = client.get(DEPS, params={"pageSize": 2}).json()
    assert [d["name"].rsplit("/", 1)[1] for d in first["deployments"]] == ["dc", "da"]
    second = client.get(DEPS, params={"pageSize": 2, "pageToken": first["nextPageToken"]}).json()
    assert [d["name"].rsplit("/", 1)[1] for d in second["deployments"]] == ["db"] and second["nextPageToken"] == ""
    client.delete(f"{DEPS}/da")
    clock.advance(2)
    assert len(client.get(DEPS).json()["deployments"]) == 2
    assert len(client.get(DEPS, params={"showDeleted": "true"}).json()["deployments"]) == 3


def test_patch_with_a_mask_changes_only_the_masked_fields(client, clock: FakeClock):
    create_dep(client, "d1")
    clock.advance(11)
    answer = client.patch(
        f"{DEPS}/d1", params={"updateMask": "description"}, json={"description": "new", "maxReplicaCount": 5}
    )
    assert answer.status_code == 200
    assert answer.json()["description"] == "new" and answer.json()["maxReplicaCount"] == 1
    assert answer.json()["state"] == "READY"  # no serving restart


def test_reattach_restarts_serving_then_ready_on_the_new_trainers_bucket(client, clock: FakeClock):
    old, new = trainer(client, "tr1"), trainer(client, "tr2")
    create_dep(client, "d1", hotLoadTrainerJob=old)
    clock.advance(11)
    answer = client.patch(
        f"{DEPS}/d1",
        params={"updateMask": "hot_load_trainer_job,hot_load_transition_type"},
        json={"hotLoadTrainerJob": new, "hotLoadTransitionType": "SYNC"},
    ).json()
    assert answer["state"] == "UPDATING"
    clock.advance(1.5)
    got = client.get(f"{DEPS}/d1").json()
    assert got["state"] == "READY" and got["hotLoadTrainerJob"] == new and got["hotLoadTransitionType"] == "SYNC"
    assert got["hotLoadBucketUrl"] == trainer_bucket_url("local", "tr2")


def test_patch_without_a_mask_applies_the_fields_sent(client, clock: FakeClock):
    create_dep(client, "d1")
    clock.advance(11)
    answer = client.patch(f"{DEPS}/d1", json={"maxReplicaCount": 0, "minReplicaCount": 0}).json()
    assert answer["maxReplicaCount"] == 0 and answer["replicaCount"] == 0 and answer["baseModel"] == QWEN8B


@pytest.mark.parametrize(
    ("mask", "patch", "fragment"),
    [
        ("preemptible", {"preemptible": False}, "preemptible cannot be changed"),
        (
            "hot_load_bucket_url,hot_load_trainer_job",
            {"hotLoadBucketUrl": "gs://b/", "hotLoadTrainerJob": "accounts/local/rlorTrainerJobs/t"},
            "update hot_load_trainer_job instead",
        ),
        ("hot_load_transition_type", {"hotLoadTransitionType": "NOW"}, "ASYNC or SYNC"),
    ],
)
def test_patch_refuses_what_the_real_api_refuses(client, mask, patch, fragment):
    create_dep(client, "d1")
    answer = client.patch(f"{DEPS}/d1", params={"updateMask": mask}, json=patch)
    assert answer.status_code == 400 and fragment in answer.json()["error"]["message"]


def test_patch_and_get_of_an_unknown_deployment_are_404(client):
    assert client.get(f"{DEPS}/nope").status_code == 404
    assert client.patch(f"{DEPS}/nope", json={"description": "x"}).status_code == 404
    assert client.delete(f"{DEPS}/nope").status_code == 404


def test_delete_goes_deleting_then_a_deleted_tombstone(client, clock: FakeClock):
    create_dep(client, "d1")
    answer = client.delete(f"{DEPS}/d1", params={"ignoreChecks": "true"})
    assert answer.status_code == 200 and answer.json()["state"] == "DELETING"
    clock.advance(1.5)
    got = client.get(f"{DEPS}/d1").json()
    assert got["state"] == "DELETED" and "deleteTime" in got and "purgeTime" in got
    assert client.delete(f"{DEPS}/d1").json()["state"] == "DELETED"  # a second delete is a no-op
    assert client.patch(f"{DEPS}/d1", json={"description": "x"}).status_code == 400
    assert create_dep(client, "d1").status_code == 409  # a tombstone keeps its ID


def test_a_hard_delete_ends_in_404_and_frees_the_id(client, clock: FakeClock):
    create_dep(client, "d1")
    assert client.delete(f"{DEPS}/d1", params={"ignoreChecks": "true", "hard": "true"}).json()["state"] == "DELETING"
    assert client.get(f"{DEPS}/d1").json()["state"] == "DELETING"
    clock.advance(1.5)
    assert client.get(f"{DEPS}/d1").status_code == 404
    assert client.get(DEPS, params={"showDeleted": "true"}).json()["deployments"] == []
    assert create_dep(client, "d1").json()["state"] == "CREATING"


def test_fail_fault_through_the_admin_route_and_the_store(client, store: Store):
    create_dep(client, "d1")
    answer = client.post("/_emulator/faults", json={"deploymentId": "d1", "fault": "fail-deployment", "message": "oom"})
    assert answer.status_code == 200 and answer.json()["state"] == "FAILED"
    assert answer.json()["status"]["message"] == "oom"
    create_dep(client, "d2")
    assert store.deployments.fail("d2")["state"] == "FAILED"
    missing = client.post("/_emulator/faults", json={"deploymentId": "zz", "fault": "fail-deployment"})
    assert missing.status_code == 404


def test_hot_load_status_and_the_probe_follow_the_state(client, clock: FakeClock):
    create_dep(client, "d1")
    plane = {"fireworks-deployment": "accounts/local/deployments/d1", "Authorization": "Bearer local"}
    probe = {"model": "accounts/local/deployments/d1", "prompt": [1, 2], "max_tokens": 4}
    assert client.get("http://emulator//hot_load/v1/models/hot_load", headers=plane).json() == {"replicas": []}
    assert client.post("/inference/v1/completions", json=probe).status_code == 404
    assert client.post("/hot_load/v1/models/hot_load", headers=plane, json={"identity": "s1"}).status_code == 400
    clock.advance(11)
    assert client.post("/inference/v1/completions", json=probe).status_code == 200
    assert client.post("/hot_load/v1/models/hot_load", headers=plane, json={"identity": "s1"}).status_code == 200
    replica = client.get("/hot_load/v1/models/hot_load", headers=plane).json()["replicas"][0]
    assert replica["readiness"] is True and replica["current_snapshot_identity"] == "s1"


def test_a_wrong_key_is_401_on_deployment_routes(client):
    assert client.get(DEPS, headers={"X-Api-Key": "wrong"}).status_code == 401


def test_an_older_database_gains_the_deployments_table(db_path: Path, clock: FakeClock):
    conn = sqlite3.connect(db_path)
    conn.execute("CREATE TABLE settings (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
    conn.commit()
    conn.close()
    store = Store(db_path, clock=clock)
    assert store.deployments.create(dep_body(), {"deploymentId": "d1"}, superuser=False)["state"] == "CREATING"


def test_a_deployment_first_trainer_of_a_trainer_first_deployment_is_refused(client):
    name = trainer(client, "tr1")
    create_dep(client, "d1", hotLoadTrainerJob=name)
    refused = create(client, "tr2", hotLoadDeploymentId="d1")
    assert refused.status_code == 400 and "hotload flow mismatch" in refused.json()["error"]["message"]
    create_dep(client, "d2")
    assert create(client, "tr3", hotLoadDeploymentId="d2").status_code == 200
