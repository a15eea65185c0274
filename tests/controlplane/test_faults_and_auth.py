"""Auth on every route, injected faults, body limits, and the admin fault route."""

from __future__ import annotations

import time

import httpx
import pytest

from rlorinfra.controlplane.app import make_app
from rlorinfra.controlplane.store import Store
from tests.controlplane.helpers import JOBS, KEY, POLICY_SHAPE, SUPERUSER, SUPERUSER_KEY, FakeClock, body, create

ROUTES = [
    ("GET", "/v1/accounts?pageSize=2"),
    ("GET", "/v1/accounts/local"),
    ("GET", JOBS),
    ("POST", JOBS),
    ("GET", f"{JOBS}/j1"),
    ("DELETE", f"{JOBS}/j1"),
    ("POST", f"{JOBS}/j1:resume"),
    ("POST", f"{JOBS}/j1:cancel"),
    ("GET", "/v1/accounts/fireworks/trainingShapes"),
    ("GET", "/v1/accounts/fireworks/trainingShapes/ts-qwen3-8b-policy"),
    ("GET", "/v1/accounts/fireworks/trainingShapes/ts-qwen3-8b-policy/versions?filter=latest_validated%3Dtrue"),
    ("GET", "/v1/accounts/fireworks/trainingShapes/ts-qwen3-8b-policy/versions/v1"),
    ("GET", "/training/v1/rlorTrainerJobs/local/j1/api/v1/healthz"),
    ("POST", "/_emulator/faults"),
    ("GET", "/no/such/route"),
]


@pytest.fixture(scope="module")
def shared_app(tmp_path_factory):
    """One app for the auth matrix (every request there is refused anyway)."""
    return make_app(Store(tmp_path_factory.mktemp("auth") / "cp.sqlite3"))


def wsgi_client(app, headers=None) -> httpx.Client:
    return httpx.Client(transport=httpx.WSGITransport(app=app), base_url="http://e", headers=headers or {})


@pytest.mark.parametrize("method,path", ROUTES)
@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"X-Api-Key": "wrong"},
        {"Authorization": "Bearer wrong"},
        {"Authorization": "Basic bG9jYWw6"},
        {"X-Api-Key": "local", "Authorization": "Bearer wrong"},
        {"X-Api-Key": "localx"},
        {"X-Api-Key": ""},
    ],
    ids=["missing", "wrong-x-api-key", "wrong-bearer", "basic", "mixed", "prefix", "empty"],
)
def test_every_route_needs_the_key(shared_app, method, path, headers):
    with wsgi_client(shared_app, headers) as c:
        response = c.request(method, path, json={})
    assert response.status_code == 401
    assert response.json()["error"]["status"] == "UNAUTHENTICATED"
    assert response.json()["error"]["code"] == 16


@pytest.mark.parametrize(
    "headers",
    [
        {"X-Api-Key": "s3cret"},
        {"Authorization": "Bearer s3cret"},
        {"X-Api-Key": "s3cret", "Authorization": "Bearer s3cret"},
    ],
)
def test_the_key_is_accepted_in_either_header(store: Store, headers):
    with wsgi_client(make_app(store, api_key="s3cret"), headers) as c:
        assert c.get("/v1/accounts").status_code == 200
    with wsgi_client(make_app(store, api_key="s3cret"), KEY) as c:
        assert c.get("/v1/accounts").status_code == 401


SUPERUSER_ONLY = [
    ({"skipValidations": "true"}, body(), "skipValidations"),
    ({}, body(trainingConfig={"extraArgs": ["--a"]}), "trainingConfig.extraArgs"),
    ({}, body(extraValues={"x": "y"}), "extraValues"),
    ({}, body(preemptible=True), "preemptible"),
    ({}, body(purpose="pilot"), "purpose"),
    ({}, body(managedBy="platform"), "managedBy"),
]


@pytest.mark.parametrize("params,sent,field", SUPERUSER_ONLY, ids=[f for _, _, f in SUPERUSER_ONLY])
def test_a_customer_key_is_refused_superuser_only_parameters(client, params, sent, field):
    response = client.post(JOBS, params={"trainingShape": POLICY_SHAPE, "rlorTrainerJobId": "j1", **params}, json=sent)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == 3 and error["status"] == "INVALID_ARGUMENT"
    assert error["message"].startswith(f"{field} requires a superuser API key")
    assert client.get(f"{JOBS}/j1").status_code == 404  # nothing was created


@pytest.mark.parametrize("params,sent,field", SUPERUSER_ONLY, ids=[f for _, _, f in SUPERUSER_ONLY])
def test_a_superuser_key_may_send_them(root_client, params, sent, field):
    response = root_client.post(JOBS, params={"trainingShape": POLICY_SHAPE, **params}, json=sent)
    assert response.status_code == 200, response.text


def test_customer_may_send_the_ungated_values(client):
    response = client.post(
        JOBS, params={"trainingShape": POLICY_SHAPE, "skipValidations": "false"}, json=body(preemptible=False)
    )
    assert response.status_code == 200, response.text


def test_the_manual_path_needs_a_superuser_key(client, root_client):
    refused = create(client, "m1", manual=True, trainingConfig={"acceleratorCount": 2})
    assert refused.status_code == 400
    assert "skipValidations requires a superuser API key" in refused.json()["error"]["message"]
    assert create(root_client, "m1", manual=True, trainingConfig={"acceleratorCount": 2}).status_code == 200


@pytest.mark.parametrize("method,path", ROUTES[:-2])
def test_superuser_keys_are_accepted_on_every_route(app, method, path):
    with wsgi_client(app, SUPERUSER) as c:
        assert c.request(method, path, json={}).status_code != 401
    with wsgi_client(app, {"Authorization": f"Bearer {SUPERUSER_KEY}"}) as c:
        assert c.request(method, path, json={}).status_code != 401


def test_a_customer_and_a_superuser_key_together_act_as_a_customer(app):
    with wsgi_client(app, {**KEY, "Authorization": f"Bearer {SUPERUSER_KEY}"}) as c:
        response = c.post(JOBS, params={"skipValidations": "true"}, json=body())
    assert response.status_code == 400 and "superuser" in response.json()["error"]["message"]


def test_empty_superuser_keys_are_refused(store: Store):
    with pytest.raises(ValueError):
        make_app(store, superuser_keys=("",))


def test_injected_latency_delays_api_routes_but_not_admin(store: Store, clock: FakeClock):
    with wsgi_client(make_app(store, latency_ms=80), KEY) as c:
        started = time.monotonic()
        assert c.get("/v1/accounts").status_code == 200
        delayed = time.monotonic() - started
        create(c, "j1")
        clock.advance(10)
        started = time.monotonic()
        c.post("/_emulator/faults", json={"jobId": "j1", "fault": "mark-unhealthy"})
        admin = time.monotonic() - started
    assert delayed >= 0.08
    assert admin < delayed


def test_error_rate_one_gives_503_unavailable(store: Store):
    with wsgi_client(make_app(store, error_rate=1.0), KEY) as c:
        response = c.get(JOBS)
        assert response.status_code == 503
        assert response.json()["error"] == {
            "code": 14,
            "status": "UNAVAILABLE",
            "message": response.json()["error"]["message"],
        }
        assert c.post("/_emulator/faults", json={"jobId": "nope", "fault": "preempt"}).status_code == 404


def test_rate_limit_gives_429_with_retry_after(store: Store):
    with wsgi_client(make_app(store, rate_limit_rate=1.0, retry_after_s=7), KEY) as c:
        response = c.get(JOBS)
    assert response.status_code == 429
    assert response.headers["Retry-After"] == "7"
    assert response.json()["error"]["status"] == "RESOURCE_EXHAUSTED"
    assert response.json()["error"]["code"] == 8


def test_fault_rates_are_probabilities_and_seedable(store: Store):
    def codes(seed: int) -> list[int]:
        with wsgi_client(make_app(store, error_rate=0.3, rate_limit_rate=0.2, seed=seed), KEY) as c:
            return [c.get("/v1/accounts").status_code for _ in range(200)]

    first = codes(42)
    assert first == codes(42)
    assert {200, 429, 503} == set(first)
    assert 20 < first.count(503) < 90 and 15 < first.count(429) < 70


def test_oversized_bodies_get_413(store: Store):
    with wsgi_client(make_app(store, max_body_bytes=1024), KEY) as c:
        big = c.post(JOBS, content=b"{" + b" " * 2000 + b"}", headers={"Content-Type": "application/json"})
        assert big.status_code == 413
        assert big.json()["error"]["status"] == "INVALID_ARGUMENT"
        assert c.post(JOBS, params={"trainingShape": POLICY_SHAPE}, json=body()).status_code == 200


def test_oversized_body_over_a_socket_keeps_the_server_usable(served, served_client):
    response = served_client.post(JOBS, content=b"x" * (2 << 20))
    assert response.status_code == 413
    assert served_client.get("/v1/accounts").status_code == 200


def test_malformed_json_is_400_but_empty_resume_body_is_fine(client, clock: FakeClock):
    create(client, "j1")
    clock.advance(10)
    client.post(f"{JOBS}/j1:cancel", content=b"", headers={"Content-Type": "application/json"})
    clock.advance(1)
    ok = client.post(f"{JOBS}/j1:resume", content=b"", headers={"Content-Type": "application/json"})
    assert ok.status_code == 200
    bad = client.post(JOBS, content=b'{"trainingConfig": ', headers={"Content-Type": "application/json"})
    assert bad.status_code == 400
    assert "malformed JSON" in bad.json()["error"]["message"]


# -- admin route ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "fault,state,code",
    [
        ("preempt", "JOB_STATE_FAILED", "UNAVAILABLE"),
        ("fail", "JOB_STATE_FAILED", "INTERNAL"),
        ("set-idle", "JOB_STATE_IDLE", "OK"),
        ("mark-unhealthy", "JOB_STATE_RUNNING", "OK"),
    ],
)
def test_admin_fault_route(client, clock: FakeClock, fault, state, code):
    create(client, "j1")
    clock.advance(10)
    response = client.post("/_emulator/faults", json={"jobId": "j1", "fault": fault, "message": "boom"})
    assert response.status_code == 200
    job = response.json()
    assert job["name"] == "accounts/local/rlorTrainerJobs/j1"
    assert job["state"] == state and job["status"]["code"] == code
    if fault == "fail":
        assert job["status"]["message"] == "boom"
    if fault == "preempt":
        assert job["status"]["message"] == "pod preempted"
    health = client.get("/training/v1/rlorTrainerJobs/local/j1/api/v1/healthz")
    assert health.status_code == 503


def test_admin_fault_route_errors(client, clock: FakeClock):
    assert client.post("/_emulator/faults", json={"jobId": "nope", "fault": "preempt"}).status_code == 404
    create(client, "j1")
    unknown = client.post("/_emulator/faults", json={"jobId": "j1", "fault": "explode"})
    assert unknown.status_code == 400 and "unknown fault" in unknown.json()["error"]["message"]
    assert client.post("/_emulator/faults", json={"fault": "preempt"}).status_code == 400
    assert client.post("/_emulator/faults", content=b"nope").status_code == 400
    clock.advance(10)
    client.post("/_emulator/faults", json={"jobId": "j1", "fault": "preempt"})
    again = client.post("/_emulator/faults", json={"jobId": "j1", "fault": "preempt"})
    assert again.status_code == 400 and again.json()["error"]["status"] == "FAILED_PRECONDITION"
    healthy = client.post("/_emulator/faults", json={"jobId": "j1", "fault": "mark-healthy"})
    assert healthy.status_code == 200


def test_preempting_a_creating_job_fails_it(client):
    create(client, "j1")
    job = client.post("/_emulator/faults", json={"jobId": "j1", "fault": "preempt"}).json()
    assert job["state"] == "JOB_STATE_FAILED"


@pytest.mark.parametrize("method,path", [("GET", JOBS), ("DELETE", f"{JOBS}/j1"), ("GET", "/nowhere")])
def test_oversized_bodies_get_413_on_every_route(store: Store, method, path):
    with wsgi_client(make_app(store, max_body_bytes=16), KEY) as c:
        assert c.request(method, path, content=b"x" * 17).status_code == 413
