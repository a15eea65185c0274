"""Every endpoint, its fields and status codes, in-process and over a loopback socket."""

from __future__ import annotations

import time
from urllib.parse import quote

import httpx
import pytest

from rlorinfra.controlplane.app import make_app
from rlorinfra.controlplane.server import serve_in_thread
from rlorinfra.controlplane.store import Store
from tests.controlplane.helpers import JOBS, KEY, POLICY_SHAPE, SUPERUSER, SUPERUSER_KEY, FakeClock, body, create


@pytest.fixture(params=["wsgi", "socket"])
def any_client(request, db_path):
    """The same world through httpx.WSGITransport and through a real socket."""
    store = Store(db_path, provision_seconds=0.05, settle_seconds=0.05)
    app = make_app(store, superuser_keys=(SUPERUSER_KEY,))
    if request.param == "wsgi":
        with httpx.Client(transport=httpx.WSGITransport(app=app), base_url="http://emulator", headers=KEY) as c:
            yield c
        return
    with serve_in_thread(app) as served, httpx.Client(verify=False, base_url=served.url, headers=KEY) as c:
        yield c


def wait_state(client: httpx.Client, job_id: str, wanted: str) -> dict:
    for _ in range(400):
        job = client.get(f"{JOBS}/{job_id}").json()
        if job["state"] == wanted:
            return job
        time.sleep(0.01)
    raise AssertionError(f"{job_id} never reached {wanted}: {job}")


# -- E1 accounts -------------------------------------------------------------------


def test_accounts_lists_the_one_account(any_client):
    page = any_client.get("/v1/accounts", params={"pageSize": 2}).json()
    assert [a["name"] for a in page["accounts"]] == ["accounts/local"]
    assert page["accounts"][0]["state"] == "READY"
    assert not page.get("nextPageToken")
    assert any_client.get("/v1/accounts/local").json()["name"] == "accounts/local"


def test_account_id_is_configurable(db_path):
    app = make_app(Store(db_path, account_id="team-a"), api_key="secret")
    with httpx.Client(
        transport=httpx.WSGITransport(app=app), base_url="http://e", headers={"Authorization": "Bearer secret"}
    ) as c:
        assert c.get("/v1/accounts").json()["accounts"][0]["name"] == "accounts/team-a"
        created = c.post("/v1/accounts/team-a/rlorTrainerJobs", params={"trainingShape": POLICY_SHAPE}, json=body())
        assert created.json()["name"].startswith("accounts/team-a/rlorTrainerJobs/")
        other = c.get("/v1/accounts/local/rlorTrainerJobs")
        assert other.status_code == 403
        assert other.json()["error"]["status"] == "PERMISSION_DENIED"


# -- E2 create -----------------------------------------------------------------------


RETURNED_TOP = {
    "name",
    "displayName",
    "serviceMode",
    "keepAlive",
    "dataset",
    "forwardOnly",
    "trainingConfig",
    "createdBy",
    "nodeCount",
    "hotLoadDeploymentId",
    "state",
    "status",
    "createTime",
    "acceleratorSeconds",
}


def test_create_on_the_shape_path_returns_only_declared_fields(any_client):
    sent = body(
        displayName="grpo-policy",
        hotLoadDeploymentId="dep-1",
        trainerReplicaCount=2,
        inactivityTimeout="1800s",
        forwardOnly=True,
        reservationTarget="r1",
        trainingConfig={"region": "US_IOWA_1", "customImageTag": "1.2.3", "projectionHeadDim": 4},
    )
    response = any_client.post(
        f"{JOBS}?deploymentId=dep-1&trainingShape={quote(POLICY_SHAPE, safe='')}&rlorTrainerJobId=my-job-1",
        json=sent,
    )
    assert response.status_code == 200
    job = response.json()
    assert set(job) == RETURNED_TOP
    assert job["name"] == "accounts/local/rlorTrainerJobs/my-job-1"
    assert job["state"] == "JOB_STATE_CREATING"
    assert job["trainingConfig"] == {
        "baseModel": sent["trainingConfig"]["baseModel"],
        "loraRank": 0,
        "learningRate": 1e-5,
        "region": "US_IOWA_1",
        "maxContextLength": 32768,
    }
    assert job["nodeCount"] == 1 and isinstance(job["nodeCount"], int)
    for key in ("displayName", "hotLoadDeploymentId", "forwardOnly", "serviceMode", "keepAlive", "dataset"):
        assert job[key] == sent[key], key
    assert job["createdBy"] and job["createTime"]
    assert job["status"] == {"code": "OK", "message": ""}
    assert job["acceleratorSeconds"] == {"NVIDIA_H200_141GB": "0"}
    assert any_client.get(f"{JOBS}/my-job-1").json() == job


def test_echo_create_fields_restores_the_echo(db_path):
    app = make_app(Store(db_path, provision_seconds=0.05), echo_create_fields=True)
    sent = body(
        displayName="grpo-policy",
        trainerReplicaCount=2,
        inactivityTimeout="1800s",
        trainingConfig={"region": "US_IOWA_1", "customImageTag": "1.2.3"},
    )
    with httpx.Client(transport=httpx.WSGITransport(app=app), base_url="http://e", headers=KEY) as c:
        job = c.post(JOBS, params={"trainingShape": POLICY_SHAPE, "rlorTrainerJobId": "echo"}, json=sent).json()
        listed = c.get(JOBS).json()["rlorTrainerJobs"]
    assert job["trainingConfig"] == {**sent["trainingConfig"], "maxContextLength": 32768}
    assert job["trainingShape"] == POLICY_SHAPE
    for key in ("displayName", "trainerReplicaCount", "inactivityTimeout", "useReservation"):
        assert job[key] == sent[key], key
    assert job["updateTime"] and job["acceleratorSeconds"] == {"NVIDIA_H200_141GB": "0"}
    assert listed == [job]


def test_create_on_the_shape_path_with_a_pinned_version(any_client):
    ref = "accounts/fireworks/trainingShapes/ts-llama-v3p1-70b-policy/versions/v1"
    job = any_client.post(
        JOBS, params={"trainingShape": ref}, json=body("accounts/fireworks/models/llama-v3p1-70b-instruct")
    ).json()
    assert job["nodeCount"] == 2
    assert job["trainingConfig"]["maxContextLength"] == 16384
    assert "trainingShape" not in job and "updateTime" not in job


def test_the_shape_path_checks_neither_base_model_nor_context_length(any_client):
    other_model = any_client.post(
        JOBS, params={"trainingShape": POLICY_SHAPE}, json=body("accounts/fireworks/models/qwen3-4b")
    )
    assert other_model.status_code == 200, other_model.text
    long = any_client.post(
        JOBS, params={"trainingShape": POLICY_SHAPE}, json=body(trainingConfig={"maxContextLength": 999999})
    )
    assert long.status_code == 200, long.text
    assert long.json()["trainingConfig"]["maxContextLength"] == 32768  # the shape's, as the server fills it


def test_create_on_the_manual_path_with_a_superuser_key(any_client):
    sent = body(
        nodeCount=2,
        trainingConfig={
            "acceleratorType": "NVIDIA_H100_80GB",
            "acceleratorCount": 4,
            "maxContextLength": 8192,
            "extraArgs": ["--x", "1"],
        },
        extraValues={"k": "v"},
    )
    response = any_client.post(
        JOBS, params={"skipValidations": "true", "rlorTrainerJobId": "manual"}, json=sent, headers=SUPERUSER
    )
    assert response.status_code == 200, response.text
    job = response.json()
    assert job["trainingConfig"] == {
        "baseModel": sent["trainingConfig"]["baseModel"],
        "loraRank": 0,
        "learningRate": 1e-5,
        "maxContextLength": 8192,
    }
    assert job["nodeCount"] == 2
    assert "extraValues" not in job and "trainingShape" not in job
    assert job["acceleratorSeconds"] == {"NVIDIA_H100_80GB": "0"}


def test_manual_path_node_count_defaults_to_one(any_client):
    job = any_client.post(
        JOBS,
        params={"skipValidations": "true"},
        headers=SUPERUSER,
        json=body(trainingConfig={"acceleratorType": "NVIDIA_A100_80GB"}),
    ).json()
    assert job["nodeCount"] == 1
    assert job["acceleratorSeconds"] == {"NVIDIA_A100_80GB": "0"}


def test_manual_path_without_skip_validations_is_open_to_customers(any_client):
    job = any_client.post(JOBS, json=body(nodeCount=1, trainingConfig={"acceleratorCount": 2})).json()
    assert job["acceleratorSeconds"] == {"NVIDIA_H100_80GB": "0"}  # the default accelerator


def test_create_on_the_auto_shape_path_picks_a_shape_for_the_model(any_client):
    job = any_client.post(JOBS, json=body(trainingConfig={"maxContextLength": 4096})).json()
    assert job["nodeCount"] == 1
    # the server fills the context length from the selected version
    assert job["trainingConfig"] == {**body()["trainingConfig"], "maxContextLength": 32768}
    assert job["acceleratorSeconds"] == {"NVIDIA_H200_141GB": "0"}
    assert "trainingShape" not in job
    bad = any_client.post(JOBS, json=body("accounts/fireworks/models/unknown-model"))
    assert bad.status_code == 400
    assert "no validated training shape" in bad.json()["error"]["message"]


def test_create_without_an_id_generates_a_uuid(any_client):
    job = any_client.post(JOBS, params={"trainingShape": POLICY_SHAPE}, json=body()).json()
    job_id = job["name"].rsplit("/", 1)[1]
    assert len(job_id) == 36 and job_id.count("-") == 4


def test_create_with_an_existing_id_is_409(any_client):
    assert create(any_client, "dup").status_code == 200
    response = create(any_client, "dup")
    assert response.status_code == 409
    assert response.json()["error"]["status"] == "ALREADY_EXISTS"
    assert any_client.get(f"{JOBS}/dup").status_code == 200


INVALID_CREATES = [
    ({}, body(trainingConfig={"baseModel": ""}), "baseModel is required"),
    ({}, {"serviceMode": True}, "baseModel is required"),
    ({}, body(displayName="x" * 64), "fewer than 64"),
    ({"trainingShape": POLICY_SHAPE}, body(nodeCount=1), "cannot be set with trainingShape"),
    (
        {"trainingShape": POLICY_SHAPE},
        body(trainingConfig={"acceleratorType": "NVIDIA_H100_80GB"}),
        "cannot be set with trainingShape",
    ),
    ({"trainingShape": "accounts/fireworks/trainingShapes/nope"}, body(), "was not found"),
    ({"trainingShape": POLICY_SHAPE + "/versions/v9"}, body(), "was not found"),
    ({"trainingShape": "ts-qwen3-8b-policy"}, body(), "was not found"),
    ({}, body(trainingConfig={"region": "MARS_1"}), "not a known region"),
    ({}, body(inactivityTimeout="30m"), "is not a duration"),
    ({}, body(inactivityTimeout="-5s"), "must not be negative"),
    ({}, body(inactivityTimeout="10801s"), "at most 3 hours"),
    ({}, body(inactivityTimeout=1800), "must be a duration string"),
    ({"rlorTrainerJobId": "Bad_ID"}, body(), "rlorTrainerJobId"),
    ({"rlorTrainerJobId": "x" * 64}, body(), "rlorTrainerJobId"),
    ({"skipValidations": "maybe"}, body(), "skipValidations"),
    ({}, body(nodeCount=0), "positive integer"),
    ({}, body(nodeCount="2"), "positive integer"),
    ({}, body(trainingConfig={"loraRank": True}), "non-negative integer"),
    ({}, body(surprise=1), 'unknown field "surprise"'),
    ({}, body(trainingConfig={"surprise": 1}), 'unknown field "trainingConfig.surprise"'),
    ({}, [1, 2], "must be a JSON object"),
    ({}, body(disableInactivityCleanup=True), "fireworks account"),
]


@pytest.mark.parametrize("params,sent,message", INVALID_CREATES)
def test_invalid_creates_are_400_with_a_clear_message(client, params, sent, message):
    response = client.post(JOBS, params=params, json=sent)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["status"] == "INVALID_ARGUMENT" and error["code"] == 3
    assert message in error["message"]


def test_malformed_and_empty_create_bodies_are_400(client):
    for content in (b"{not json", b"", b"[", b'{"a":'):
        response = client.post(JOBS, content=content, headers={"Content-Type": "application/json"})
        assert response.status_code == 400
        assert response.json()["error"]["status"] == "INVALID_ARGUMENT"


# -- E3 get, E5 delete, E6 resume, E7 cancel ------------------------------------------------


def test_get_unknown_job_is_404(any_client):
    for job_id in ("nope", "NOT-VALID", "x" * 100):
        response = any_client.get(f"{JOBS}/{job_id}")
        assert response.status_code == 404
        assert response.json()["error"] == {
            "code": 5,
            "status": "NOT_FOUND",
            "message": response.json()["error"]["message"],
        }


@pytest.mark.parametrize("verb", ["resume", "cancel"])
def test_resume_and_cancel_of_unknown_jobs_are_404(any_client, verb):
    assert any_client.post(f"{JOBS}/nope:{verb}").status_code == 404
    assert any_client.delete(f"{JOBS}/nope").status_code == 404


def test_full_lifecycle_over_the_wire(any_client):
    create(any_client, "life")
    running = wait_state(any_client, "life", "JOB_STATE_RUNNING")
    assert running["directRouteHandle"].endswith("/training/v1/rlorTrainerJobs/local/life")
    health = any_client.get(
        "/training/v1/rlorTrainerJobs/local/life/api/v1/healthz", headers={"Authorization": "Bearer local"}
    )
    assert health.status_code == 200
    # the SDK posts :cancel/:resume with Content-Type json and an empty body
    empty = {"Content-Type": "application/json"}
    assert any_client.post(f"{JOBS}/life:cancel", headers=empty).json()["state"] == "JOB_STATE_CANCELLING"
    wait_state(any_client, "life", "JOB_STATE_CANCELLED")
    assert any_client.post(f"{JOBS}/life:resume", json={}).json()["state"] == "JOB_STATE_CREATING"
    wait_state(any_client, "life", "JOB_STATE_RUNNING")
    assert any_client.delete(f"{JOBS}/life", headers=empty).status_code == 200
    wait_state(any_client, "life", "JOB_STATE_ARCHIVED")


def test_resume_with_a_non_object_body_is_400(client):
    create(client, "j1")
    assert client.post(f"{JOBS}/j1:resume", json=[1]).status_code == 400
    assert client.post(f"{JOBS}/j1:cancel", content=b"{oops").status_code == 400


# -- E4 list ----------------------------------------------------------------------------------


def test_list_pages_through_every_job_with_opaque_tokens(client):
    for i in range(7):
        create(client, f"job-{i}", displayName=f"name-{i % 2}")
    seen, token, pages = [], "", 0
    while True:
        params = {"pageSize": 3, **({"pageToken": token} if token else {})}
        page = client.get(JOBS, params=params).json()
        seen += [j["name"].rsplit("/", 1)[1] for j in page["rlorTrainerJobs"]]
        token, pages = page.get("nextPageToken"), pages + 1
        if not token:
            break
    assert seen == [f"job-{i}" for i in range(7)] and pages == 3


def test_list_page_size_defaults_and_caps(client, store: Store):
    for i in range(205):
        store.create_job(body(), {"rlorTrainerJobId": f"j{i:03d}", "trainingShape": POLICY_SHAPE})
    assert len(client.get(JOBS).json()["rlorTrainerJobs"]) == 50
    assert len(client.get(JOBS, params={"pageSize": 1000}).json()["rlorTrainerJobs"]) == 200
    assert len(client.get(JOBS, params={"pageSize": 0}).json()["rlorTrainerJobs"]) == 50
    assert client.get(JOBS, params={"pageSize": "x"}).status_code == 400
    assert client.get(JOBS, params={"pageSize": -1}).status_code == 400


@pytest.mark.parametrize(
    "expr,expected",
    [
        ('display_name="name-1"', ["job-1", "job-3"]),
        ('displayName = "name-0"', ["job-0", "job-2"]),
        ("state=JOB_STATE_RUNNING", ["job-2", "job-3"]),
        ('state="JOB_STATE_CREATING" AND display_name="name-0"', ["job-0"]),
        ("state != JOB_STATE_CREATING", ["job-2", "job-3"]),
        ("state=RUNNING AND displayName=name-1", ["job-3"]),
    ],
)
def test_list_filters(client, store: Store, clock: FakeClock, expr, expected):
    for i in range(2):
        create(client, f"job-{i}", displayName=f"name-{i % 2}")
    clock.advance(100)
    for i in range(2, 4):
        create(client, f"job-{i}", displayName=f"name-{i % 2}")
    clock.advance(10)
    client.post(f"{JOBS}/job-0:cancel")
    client.post(f"{JOBS}/job-1:cancel")
    clock.advance(1)
    client.post(f"{JOBS}/job-0:resume")
    client.post(f"{JOBS}/job-1:resume")
    # job-0/1 are CREATING again (via cancel+resume), job-2/3 RUNNING
    names = [j["name"].rsplit("/", 1)[1] for j in client.get(JOBS, params={"filter": expr}).json()["rlorTrainerJobs"]]
    assert names == expected


@pytest.mark.parametrize(
    "expr",
    [
        "name=x",
        "display_name ~ x",
        "state=RUNNING OR state=FAILED",
        "state=",
        '"x"',
        "state=RUNNING AND",
        'display_name="unterminated',
    ],
)
def test_unknown_filter_syntax_is_400(client, expr):
    response = client.get(JOBS, params={"filter": expr})
    assert response.status_code == 400
    assert "filter" in response.json()["error"]["message"]


def test_bad_page_token_and_order_by_are_400(client):
    assert client.get(JOBS, params={"pageToken": "garbage!"}).status_code == 400
    assert client.get(JOBS, params={"orderBy": "create_time"}).status_code == 400
    assert client.get(JOBS, params={"orderBy": "name desc"}).status_code == 200


def test_list_order_by_name_desc(client):
    for i in range(5):
        create(client, f"j{i}")
    first = client.get(JOBS, params={"orderBy": "name desc", "pageSize": 3}).json()
    second = client.get(
        JOBS, params={"orderBy": "name desc", "pageSize": 3, "pageToken": first["nextPageToken"]}
    ).json()
    names = [j["name"][-2:] for j in first["rlorTrainerJobs"] + second["rlorTrainerJobs"]]
    assert names == ["j4", "j3", "j2", "j1", "j0"]


def test_list_stays_correct_with_5000_jobs(client, store: Store, clock: FakeClock):
    for i in range(5000):
        store.create_job(body(), {"rlorTrainerJobId": f"bulk-{i:05d}", "trainingShape": POLICY_SHAPE})
    for i in range(0, 5000, 10):
        store.delete_job(f"bulk-{i:05d}")
    clock.advance(1)
    names, token = [], ""
    while True:
        page = client.get(JOBS, params={"pageSize": 200, **({"pageToken": token} if token else {})}).json()
        names += [j["name"] for j in page["rlorTrainerJobs"]]
        token = page["nextPageToken"]
        if not token:
            break
    assert len(names) == 4500 and len(set(names)) == 4500


# -- E9, E10 training shapes ------------------------------------------------------------------------


def test_latest_validated_version(any_client):
    url = "/v1/accounts/fireworks/trainingShapes/ts-qwen3-8b-policy/versions?filter=latest_validated%3Dtrue&pageSize=1"
    versions = any_client.get(url).json()["trainingShapeVersions"]
    assert len(versions) == 1
    version = versions[0]
    assert version["name"] == POLICY_SHAPE + "/versions/v2"
    assert version["latestValidated"] is True and version["validated"] is True and version["public"] is True
    snap = version["snapshot"]
    assert snap["maxSupportedContextLength"] == 32768 and snap["nodeCount"] == 1
    assert snap["acceleratorType"] == "NVIDIA_H200_141GB" and snap["acceleratorCount"] == 8
    assert snap["trainerShardingScheme"] == {"pipelineParallelism": 1}
    assert snap["trainerMode"] == "POLICY_TRAINER"
    for key in ("trainerImageTag", "deploymentShapeVersion", "deploymentImageTag", "baseModelWeightPrecision"):
        assert snap[key]


def test_latest_validated_is_not_always_the_newest(any_client):
    base = "/v1/accounts/fireworks/trainingShapes/ts-qwen3-8b-lora/versions"
    all_versions = any_client.get(base).json()["trainingShapeVersions"]
    assert [v["name"][-2:] for v in all_versions] == ["v2", "v1"]
    latest = any_client.get(base, params={"filter": "latest_validated=true"}).json()["trainingShapeVersions"]
    assert [v["name"][-2:] for v in latest] == ["v1"]
    job = any_client.post(
        JOBS,
        params={"trainingShape": "accounts/fireworks/trainingShapes/ts-qwen3-8b-lora"},
        json=body(trainingConfig={"loraRank": 16}),
    ).json()
    assert job["trainingConfig"]["maxContextLength"] == 16384


def test_exact_version_and_shape_lookups(any_client):
    version = any_client.get(f"/v1/{POLICY_SHAPE}/versions/v1").json()
    assert version["name"] == f"{POLICY_SHAPE}/versions/v1" and version["latestValidated"] is False
    assert any_client.get(f"/v1/{POLICY_SHAPE}/versions/v7").status_code == 404
    assert any_client.get("/v1/accounts/fireworks/trainingShapes/nope/versions").status_code == 404
    assert any_client.get("/v1/accounts/local/trainingShapes/ts-qwen3-8b-policy/versions").status_code == 404
    shapes = any_client.get("/v1/accounts/fireworks/trainingShapes").json()["trainingShapes"]
    modes = {s["trainerMode"] for s in shapes}
    assert len(shapes) >= 4 and modes == {"POLICY_TRAINER", "LORA_TRAINER", "FORWARD_ONLY"}
    assert any_client.get(f"/v1/{POLICY_SHAPE}").json()["name"] == POLICY_SHAPE


def test_shape_catalogue_has_a_multi_node_shape(client):
    versions = [
        client.get(f"/v1/{s['name']}/versions").json()["trainingShapeVersions"]
        for s in client.get("/v1/accounts/fireworks/trainingShapes").json()["trainingShapes"]
    ]
    assert all(len(v) == 2 for v in versions)
    assert any(v[0]["snapshot"]["nodeCount"] > 1 for v in versions)


# -- routing --------------------------------------------------------------------------------------


def test_unknown_paths_are_404_and_wrong_methods_405(any_client):
    assert any_client.get("/v2/nothing").status_code == 404
    response = any_client.put(f"{JOBS}/x")
    assert response.status_code == 405
    assert response.headers["allow"] == "DELETE, GET"
    assert any_client.request("PATCH", JOBS).status_code == 405
