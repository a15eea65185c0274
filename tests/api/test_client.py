"""The control-plane client against scripted transports: retries, errors, security."""

from __future__ import annotations

import json
import random

import httpx
import pytest

from rlorinfra.api.client import ControlPlaneClient, RetryPolicy
from rlorinfra.errors import AlreadyExistsError, ApiError, AuthError, NotFoundError

KEY = "sk-test-secret-key-123"


def scripted(responses, seen=None):
    """A MockTransport answering from a list of (status, body, headers) in order."""
    queue = list(responses)

    def handler(request: httpx.Request) -> httpx.Response:
        if seen is not None:
            seen.append(request)
        if request.url.path == "/v1/accounts":
            return httpx.Response(200, json={"accounts": [{"name": "accounts/acme"}]})
        status, body, headers = queue.pop(0)
        return httpx.Response(status, json=body, headers=headers or {})

    return httpx.MockTransport(handler)


def make_client(transport, sleeps=None, **kw):
    return ControlPlaneClient(
        "https://api.example.test",
        KEY,
        transport=transport,
        sleep=(sleeps.append if sleeps is not None else lambda s: None),
        rng=random.Random(0),
        retry=RetryPolicy(budget_s=1000),
        **kw,
    )


def job(job_id="j1", state="JOB_STATE_RUNNING"):
    return {
        "name": f"accounts/acme/rlorTrainerJobs/{job_id}",
        "displayName": "n",
        "state": state,
        "trainingConfig": {"baseModel": "m"},
    }


def test_account_is_resolved_once_and_used_in_paths():
    seen = []
    client = make_client(scripted([(200, job(), None), (200, job(), None)], seen))
    client.get_job("j1")
    client.get_job("j1")
    paths = [r.url.path for r in seen]
    assert paths == ["/v1/accounts", "/v1/accounts/acme/rlorTrainerJobs/j1", "/v1/accounts/acme/rlorTrainerJobs/j1"]
    assert seen[0].url.params["pageSize"] == "2"


def test_retries_503_and_429_honouring_retry_after():
    sleeps = []
    client = make_client(
        scripted(
            [
                (503, {"error": {"code": 14, "message": "busy", "status": "UNAVAILABLE"}}, None),
                (
                    429,
                    {"error": {"code": 8, "message": "slow down", "status": "RESOURCE_EXHAUSTED"}},
                    {"Retry-After": "7"},
                ),
                (200, job(), None),
            ]
        ),
        sleeps,
    )
    assert client.get_job("j1").state == "JOB_STATE_RUNNING"
    assert len(sleeps) == 2
    assert sleeps[1] >= 7.0  # Retry-After is honoured
    assert client.request_count == 4  # accounts + 3 tries


def test_gives_up_when_budget_is_spent():
    responses = [(503, {"error": {"message": "down"}}, None)] * 50
    client = ControlPlaneClient(
        "https://api.example.test",
        KEY,
        transport=scripted(responses),
        sleep=lambda s: None,
        retry=RetryPolicy(budget_s=1000, max_attempts=3),
    )
    with pytest.raises(ApiError) as info:
        client.get_job("j1")
    assert info.value.status_code == 503
    assert "down" in info.value.summary


@pytest.mark.parametrize(
    "status,cls", [(404, NotFoundError), (409, AlreadyExistsError), (401, AuthError), (403, AuthError), (400, ApiError)]
)
def test_errors_are_typed_and_not_retried(status, cls):
    sleeps = []
    client = make_client(scripted([(status, {"error": {"code": 3, "message": "nope", "status": "X"}}, None)]), sleeps)
    with pytest.raises(cls) as info:
        client.create_job("j1", "n", {"base_model": "m"})
    assert info.value.status_code == status and info.value.message == "nope"
    assert sleeps == []
    assert KEY not in str(info.value)


def test_get_returns_none_on_404():
    client = make_client(scripted([(404, {"error": {"message": "missing"}}, None)]))
    assert client.get_job("gone") is None


def test_create_sends_sdk_shaped_request():
    seen = []
    client = make_client(scripted([(200, job("my-id"), None)], seen))
    client.create_job("my-id", "trainer", {"base_model": "m", "training_shape": "accounts/fireworks/trainingShapes/s"})
    request = seen[-1]
    assert request.method == "POST"
    assert request.url.params["rlorTrainerJobId"] == "my-id"
    assert request.url.params["trainingShape"] == "accounts/fireworks/trainingShapes/s"
    body = json.loads(request.content)
    assert body["serviceMode"] is True and body["displayName"] == "trainer"
    assert "maxContextLength" not in body["trainingConfig"]
    assert request.headers["X-Api-Key"] == KEY


def test_list_follows_pages_until_token_is_empty():
    pages = [
        (200, {"rlorTrainerJobs": [job("a")], "nextPageToken": "t1"}, None),
        (200, {"rlorTrainerJobs": [job("b")], "nextPageToken": ""}, None),
    ]
    seen = []
    client = make_client(scripted(pages, seen))
    assert [j.job_id for j in client.list_jobs()] == ["a", "b"]
    assert seen[-1].url.params["pageToken"] == "t1"
    assert seen[-1].url.params["pageSize"] == "200"


def test_health_is_true_only_for_200_and_sends_bearer():
    seen = []
    client = make_client(scripted([(200, {}, None), (503, {}, None)], seen))
    assert client.healthy("j1") is True
    assert client.healthy("j1") is False
    assert seen[-1].url.path == "/training/v1/rlorTrainerJobs/acme/j1/api/v1/healthz"
    assert seen[-1].headers["Authorization"] == f"Bearer {KEY}"


def test_transport_errors_are_retried_then_reported():
    calls = []

    def handler(request):
        calls.append(request)
        raise httpx.ConnectError("refused")

    client = ControlPlaneClient(
        "https://api.example.test",
        KEY,
        account_id="acme",
        transport=httpx.MockTransport(handler),
        sleep=lambda s: None,
        retry=RetryPolicy(budget_s=1000, max_attempts=4),
    )
    with pytest.raises(ApiError) as info:
        client.get_job("j1")
    assert len(calls) == 4
    assert "Could not reach" in info.value.summary


def test_plain_http_to_remote_host_is_refused_unless_insecure():
    with pytest.raises(ApiError) as info:
        ControlPlaneClient("http://api.example.test", KEY)
    assert "--insecure" in info.value.detail
    ControlPlaneClient("http://api.example.test", KEY, allow_insecure=True).close()
    ControlPlaneClient("http://127.0.0.1:8765", KEY).close()


def test_shape_resolution_latest_and_pinned():
    version = {
        "name": "accounts/fireworks/trainingShapes/s/versions/v2",
        "snapshot": {"acceleratorType": "NVIDIA_H100_80GB", "acceleratorCount": 8, "nodeCount": 2},
    }
    seen = []
    client = make_client(scripted([(200, {"trainingShapeVersions": [version]}, None), (200, version, None)], seen))
    latest = client.resolve_shape("accounts/fireworks/trainingShapes/s")
    assert latest.accelerator_count == 8 and latest.node_count == 2 and latest.shape.endswith("/s")
    assert seen[-1].url.params["filter"] == "latest_validated=true"
    client.resolve_shape("accounts/fireworks/trainingShapes/s/versions/v2")
    assert seen[-1].url.path == "/v1/accounts/fireworks/trainingShapes/s/versions/v2"


def test_plain_http_trainer_gateway_is_refused_too():
    # Health checks carry the key: an http gateway would leak it like an http control plane.
    with pytest.raises(ApiError) as info:
        ControlPlaneClient("https://api.example.test", KEY, gateway_url="http://gateway.example.test")
    assert "gateway.example.test" in info.value.summary


def test_malformed_job_ids_never_reach_the_wire():
    seen = []
    client = make_client(scripted([], seen))
    for bad in ("..", "a/b", "UPPER", "", "x" * 64):
        if not bad:
            continue
        with pytest.raises(ApiError) as info:
            client.get_job(bad)
        assert "Invalid job ID" in info.value.summary
    assert [r.url.path for r in seen if "rlorTrainerJobs" in r.url.path] == []
