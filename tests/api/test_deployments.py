"""Deployment calls of the control-plane client: the exact wire of PROTOCOL.md §10, parsing, retries."""

from __future__ import annotations

import json
import random

import httpx
import pytest

from rlorinfra.api.client import ControlPlaneClient, RetryPolicy
from rlorinfra.api.wire import deployment_create_request, deployment_from_resource, deployment_update_request
from rlorinfra.errors import AlreadyExistsError, ApiError, NotFoundError, OutcomeUnknownError
from rlorinfra.model.deployments import DeploymentState, HotLoadTransition

KEY = "sk-test-secret-key-123"
BASE = "/v1/accounts/acme/deployments"
TRAINER = "accounts/acme/rlorTrainerJobs/grpo-policy"


def deployment(dep_id="roll", state="READY", **extra):
    body = {"name": f"accounts/acme/deployments/{dep_id}", "state": state, "baseModel": "accounts/fireworks/models/q"}
    body.update(extra)
    return body


def scripted(responses, seen):
    """Answer account resolution, then from ``responses`` (status, body or exception, headers) in order."""
    queue = list(responses)

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/accounts":
            return httpx.Response(200, json={"accounts": [{"name": "accounts/acme"}]})
        seen.append(request)
        status, body, headers = queue.pop(0)
        if isinstance(body, Exception):
            raise body
        return httpx.Response(status, json=body, headers=headers or {})

    return httpx.MockTransport(handler)


def make_client(responses, seen, sleeps=None):
    return ControlPlaneClient(
        "https://api.example.test",
        KEY,
        transport=scripted(responses, seen),
        sleep=(sleeps.append if sleeps is not None else lambda s: None),
        rng=random.Random(0),
        retry=RetryPolicy(budget_s=1000),
    )


def assert_control_plane_headers(request: httpx.Request) -> None:
    """E13/E14/E16/E17: Content-Type + X-Api-Key, never Authorization (PROTOCOL.md §10.1)."""
    assert request.headers["X-Api-Key"] == KEY
    assert request.headers["Content-Type"] == "application/json"
    assert "Authorization" not in request.headers


# -- create -----------------------------------------------------------------


def test_create_sends_deployment_id_first_then_flags_and_the_sdk_body():
    seen: list[httpx.Request] = []
    client = make_client([(200, deployment(state="CREATING", hotLoadTrainerJob=TRAINER), None)], seen)
    spec = {
        "base_model": "accounts/fireworks/models/q",
        "deployment_shape": "accounts/fireworks/deploymentShapes/s/versions/3",
        "accelerator_type": "NVIDIA_H100_80GB",  # never sent next to a shape
        "max_replica_count": 2,
        "region": "US_IOWA_1",
        "hot_load_trainer_job": TRAINER,
        "hot_load_transition_type": "sync",
        "skip_shape_validation": True,
        "disable_speculative_decoding": True,
        "annotations": {"team": "rl"},
    }
    live = client.create_deployment("roll", spec)
    (request,) = seen
    assert request.method == "POST" and request.url.path == BASE
    assert request.url.query == b"deploymentId=roll&skipShapeValidation=true&disableSpeculativeDecoding=true"
    assert_control_plane_headers(request)
    assert json.loads(request.content) == {
        "baseModel": "accounts/fireworks/models/q",
        "description": "Fireworks training deployment",
        "minReplicaCount": 0,
        "maxReplicaCount": 2,
        "enableHotLoad": True,
        "forTraining": False,
        "placement": {"region": "US_IOWA_1"},
        "hotLoadBucketType": "FW_HOSTED",
        "hotLoadTrainerJob": TRAINER,
        "hotLoadTransitionType": "SYNC",
        "deploymentShape": "accounts/fireworks/deploymentShapes/s/versions/3",
        "annotations": {"team": "rl"},
    }
    assert live.state is DeploymentState.CREATING and live.trainer_job_id == "grpo-policy"


def test_create_manual_path_sends_accelerator_and_accept_shapeless_risk():
    params, body = deployment_create_request({"base_model": "m", "accept_shapeless_risk": True, "preemptible": True})
    assert params == [("acceptShapelessRisk", "true")]
    assert body["acceleratorType"] == "NVIDIA_H200_141GB" and "deploymentShape" not in body
    assert body["preemptible"] is True
    _, split = deployment_create_request({"base_model": "m", "extra_args": ["--a 1", "--b"]})
    assert split["extraArgs"] == ["--a", "1", "--b"]
    _, no_bucket = deployment_create_request({"base_model": "m", "hot_load_bucket_type": "none"})
    assert "hotLoadBucketType" not in no_bucket


def test_create_409_is_already_exists_for_the_caller_to_adopt():
    seen: list[httpx.Request] = []
    conflict = {"error": {"code": 6, "message": "exists", "status": "ALREADY_EXISTS"}}
    client = make_client([(409, conflict, None)], seen)
    with pytest.raises(AlreadyExistsError):
        client.create_deployment("roll", {"base_model": "m"})


def test_create_is_retried_after_a_503_with_the_same_request():
    seen: list[httpx.Request] = []
    sleeps: list[float] = []
    client = make_client([(503, {}, None), (200, deployment(state="CREATING"), None)], seen, sleeps)
    client.create_deployment("roll", {"base_model": "m"})
    assert len(seen) == 2 and len(sleeps) == 1
    assert seen[0].url == seen[1].url and seen[0].content == seen[1].content


def test_invalid_id_never_reaches_the_wire():
    seen: list[httpx.Request] = []
    client = make_client([], seen)
    with pytest.raises(ApiError, match="Invalid deployment ID"):
        client.get_deployment("../jobs")
    assert seen == []


# -- get and list -------------------------------------------------------------


def test_get_parses_reported_fields_only_and_none_on_404():
    seen: list[httpx.Request] = []
    resource = deployment(
        state="UPDATING",
        deploymentShape="accounts/f/deploymentShapes/s/versions/3",
        minReplicaCount=1,
        maxReplicaCount="2",  # proto-JSON may send int32 as a string
        replicaCount=1,
        hotLoadTrainerJob=TRAINER,
        hotLoadTransitionType="SYNC",
        hotLoadBucketUrl="gs://b/rl-checkpoints/acme/trainer-grpo-policy/",
        placement={"region": "US_IOWA_1"},
        createTime="2026-01-01T00:00:00Z",
        forTraining=True,  # sent-only: never read back
        annotations={"x": "y"},
    )
    missing = {"error": {"code": 5, "message": "no", "status": "NOT_FOUND"}}
    client = make_client([(200, resource, None), (404, missing, None)], seen)
    live = client.get_deployment("roll")
    assert client.get_deployment("gone") is None
    assert [(r.method, r.url.path, r.url.query) for r in seen] == [
        ("GET", f"{BASE}/roll", b""),
        ("GET", f"{BASE}/gone", b""),
    ]
    assert_control_plane_headers(seen[0])
    assert live is not None
    assert live.deployment_id == "roll" and live.state is DeploymentState.UPDATING
    assert (live.min_replica_count, live.max_replica_count, live.replica_count) == (1, 2, 1)
    assert live.hot_load_transition_type is HotLoadTransition.SYNC
    assert live.hot_load_bucket_url == "gs://b/rl-checkpoints/acme/trainer-grpo-policy/"
    assert live.region == "US_IOWA_1" and live.create_time == "2026-01-01T00:00:00Z"
    assert live.spec_dict() == {
        "base_model": "accounts/fireworks/models/q",
        "deployment_shape": "accounts/f/deploymentShapes/s/versions/3",
        "hot_load_trainer_job": TRAINER,
        "hot_load_transition_type": "SYNC",
        "max_replica_count": 2,
        "min_replica_count": 1,
        "region": "US_IOWA_1",
    }
    assert "for_training" not in live.reported and "annotations" not in live.reported


def test_a_bare_resource_reports_nothing_and_reads_as_unspecified():
    live = deployment_from_resource({"name": "accounts/a/deployments/d"})
    assert live.state is DeploymentState.UNSPECIFIED and live.reported == frozenset()
    assert live.min_replica_count is None and live.spec_dict() == {}


def test_list_pages_until_the_token_runs_out_keeping_the_other_params():
    seen: list[httpx.Request] = []
    client = make_client(
        [
            (200, {"deployments": [deployment("a"), deployment("b")], "nextPageToken": "t2"}, None),
            (200, {"deployments": [deployment("c", state="DELETED")], "nextPageToken": ""}, None),
        ],
        seen,
    )
    rows = client.list_deployments(filter='base_model="m"', show_deleted=True)
    assert [d.deployment_id for d in rows] == ["a", "b", "c"]
    assert all(r.method == "GET" and r.url.path == BASE for r in seen)
    assert [dict(r.url.params) for r in seen] == [
        {"pageSize": "200", "filter": 'base_model="m"', "showDeleted": "true"},
        {"pageSize": "200", "filter": 'base_model="m"', "showDeleted": "true", "pageToken": "t2"},
    ]


def test_list_without_options_sends_only_the_page_size_and_stops_on_a_missing_token():
    seen: list[httpx.Request] = []
    client = make_client([(200, {"deployments": [deployment("a")]}, None)], seen)
    pages = list(client.iter_deployment_pages())
    assert [[d.deployment_id for d in page] for page in pages] == [["a"]]
    assert seen[0].url.query == b"pageSize=200" and len(seen) == 1


def test_list_error_is_never_an_empty_last_page():
    seen: list[httpx.Request] = []
    client = make_client([(200, {"deployments": [deployment("a")], "nextPageToken": "t"}, None), (400, {}, None)], seen)
    with pytest.raises(ApiError):
        client.list_deployments()


# -- update --------------------------------------------------------------------


def test_patch_sends_the_mask_comma_joined_and_a_camel_case_body():
    seen: list[httpx.Request] = []
    client = make_client([(200, deployment(state="UPDATING", hotLoadTrainerJob=TRAINER), None)], seen)
    live = client.update_deployment(
        "roll",
        {"hot_load_trainer_job": TRAINER, "hot_load_transition_type": "SYNC"},
        ["hot_load_trainer_job", "hot_load_transition_type"],
    )
    (request,) = seen
    assert request.method == "PATCH" and request.url.path == f"{BASE}/roll"
    assert request.url.query == b"updateMask=hot_load_trainer_job%2Chot_load_transition_type"
    assert_control_plane_headers(request)
    assert json.loads(request.content) == {"hotLoadTrainerJob": TRAINER, "hotLoadTransitionType": "SYNC"}
    assert live.state is DeploymentState.UPDATING


def test_patch_without_mask_sends_no_query_like_scale_to_zero():
    seen: list[httpx.Request] = []
    client = make_client([(200, deployment(), None)], seen)
    client.update_deployment("roll", {"max_replica_count": 0, "min_replica_count": 0}, None)
    assert seen[0].url.query == b""
    assert json.loads(seen[0].content) == {"maxReplicaCount": 0, "minReplicaCount": 0}


def test_patch_mask_must_cover_every_field_and_not_be_empty():
    with pytest.raises(ValueError, match="max_replica_count"):
        deployment_update_request({"max_replica_count": 2}, ["min_replica_count"])
    with pytest.raises(ValueError, match="empty"):
        deployment_update_request({}, [])
    # A masked path absent from the fields clears it, as the API's mask means.
    assert deployment_update_request({}, ["description"]) == ([("updateMask", "description")], {})


@pytest.mark.parametrize(
    "answer",
    [(503, {}, None), (504, {}, None), (408, {}, None), (0, httpx.ReadTimeout("lost"), None),
     (0, httpx.RemoteProtocolError("dropped"), None)],
)  # fmt: skip
def test_patch_is_never_blindly_retried_after_a_lost_answer(answer):
    seen: list[httpx.Request] = []
    sleeps: list[float] = []
    client = make_client([answer], seen, sleeps)
    with pytest.raises(OutcomeUnknownError, match="update deployment roll") as info:
        client.update_deployment("roll", {"max_replica_count": 2}, ["max_replica_count"])
    assert len(seen) == 1 and sleeps == []
    assert "re-reads the deployment" in info.value.detail


def test_patch_is_retried_when_the_server_cannot_have_acted():
    seen: list[httpx.Request] = []
    sleeps: list[float] = []
    client = make_client(
        [(429, {}, {"Retry-After": "3"}), (0, httpx.ConnectError("refused"), None), (200, deployment(), None)],
        seen,
        sleeps,
    )
    client.update_deployment("roll", {"max_replica_count": 2}, ["max_replica_count"])
    assert len(seen) == 3 and len(sleeps) == 2 and sleeps[0] >= 3


# -- delete ----------------------------------------------------------------------


def test_delete_sends_ignore_checks_and_hard_and_is_false_when_gone():
    seen: list[httpx.Request] = []
    client = make_client([(200, {}, None), (404, {}, None)], seen)
    assert client.delete_deployment("roll") is True
    assert client.delete_deployment("roll") is False
    assert [(r.method, r.url.path, r.url.query) for r in seen] == [
        ("DELETE", f"{BASE}/roll", b"ignoreChecks=true&hard=true")
    ] * 2
    assert_control_plane_headers(seen[0])
    assert seen[0].content == b""


def test_delete_is_retried_after_a_lost_answer():
    seen: list[httpx.Request] = []
    client = make_client([(0, httpx.ReadTimeout("lost"), None), (503, {}, None), (200, {}, None)], seen, [])
    assert client.delete_deployment("roll") is True and len(seen) == 3


def test_get_errors_other_than_404_are_typed():
    seen: list[httpx.Request] = []
    client = make_client([(403, {"error": {"message": "no", "status": "PERMISSION_DENIED"}}, None)], seen)
    with pytest.raises(ApiError) as info:
        client.get_deployment("roll")
    assert info.value.status_code == 403 and not isinstance(info.value, NotFoundError)


# -- hot-load status (E22) ---------------------------------------------------------


def test_hot_load_status_sends_the_data_plane_headers_and_parses_replicas():
    seen: list[httpx.Request] = []
    status = {
        "replicas": [
            {
                "current_snapshot_identity": "s1",
                "readiness": True,
                "loading_state": {"stage": "error", "target_snapshot_identity": "s2"},
                "loaded_adapters": [{"identity": "a1", "status": "loaded"}, {"identity": "a2", "status": "loading"}],
            }
        ]
    }
    client = make_client([(200, status, None)], seen)
    (replica,) = client.hot_load_status("roll", "accounts/fireworks/models/q")
    (request,) = seen
    assert request.method == "GET" and request.url.path == "/hot_load/v1/models/hot_load"
    assert request.headers["Authorization"] == f"Bearer {KEY}" and request.headers["X-Api-Key"] == KEY
    assert request.headers["fireworks-model"] == "accounts/fireworks/models/q"
    assert request.headers["fireworks-deployment"] == "accounts/acme/deployments/roll"
    assert replica.has_loaded("s1") and replica.has_loaded("a1") and not replica.has_loaded("a2")
    assert replica.failed_loading("s2")


def test_hot_load_status_without_a_replicas_list_is_an_error():
    seen: list[httpx.Request] = []
    client = make_client([(200, {"replicas": None}, None), (200, {"replicas": []}, None)], seen)
    with pytest.raises(ApiError, match="Unreadable hot-load status"):
        client.hot_load_status("roll", "m")
    assert client.hot_load_status("roll", "m") == []
