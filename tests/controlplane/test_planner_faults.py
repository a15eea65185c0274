"""Faults for every state a planner handles: complete, pause, early-stop, expire, flap, drop-response."""

from __future__ import annotations

import httpx
import pytest

from rlorinfra.controlplane.app import make_app
from rlorinfra.controlplane.store import FLAP_MESSAGE, Store
from tests.controlplane.helpers import JOBS, KEY, FakeClock, create

LLAMA = "accounts/fireworks/models/llama-v3p1-70b-instruct"
LLAMA_SHAPE = "accounts/fireworks/trainingShapes/ts-llama-v3p1-70b-policy"  # 16 accelerators
FAULTS = "/_emulator/faults"
DROPPED = "response dropped after the request was processed (injected)"


def state(client: httpx.Client, job_id: str) -> str:
    return client.get(f"{JOBS}/{job_id}").json()["state"]


def fault(client: httpx.Client, job_id: str, name: str, **extra) -> httpx.Response:
    return client.post(FAULTS, json={"jobId": job_id, "fault": name, **extra})


# -- stop faults -------------------------------------------------------------------------

STOPS = [
    ("complete", "JOB_STATE_COMPLETED", "OK", True),
    ("pause", "JOB_STATE_PAUSED", "OK", True),
    ("early-stop", "JOB_STATE_EARLY_STOPPED", "OK", False),
    ("expire", "JOB_STATE_EXPIRED", "DEADLINE_EXCEEDED", False),
]


@pytest.mark.parametrize("name,wanted,code,resumable", STOPS, ids=[s[0] for s in STOPS])
def test_stop_faults_reach_their_state_and_free_the_accelerators(
    client, clock: FakeClock, name, wanted, code, resumable
):
    for i in range(5):  # capacity 64: four run, the fifth waits for capacity
        create(client, f"j{i}", shape=LLAMA_SHAPE, trainingConfig={"baseModel": LLAMA})
    clock.advance(10)
    assert state(client, "j4") == "JOB_STATE_PENDING"
    response = fault(client, "j0", name)
    assert response.status_code == 200, response.text
    job = response.json()
    assert job["state"] == wanted and job["status"]["code"] == code and "completedTime" in job
    assert "directRouteHandle" not in job
    assert state(client, "j4") == "JOB_STATE_RUNNING"  # the freed capacity went to the queue
    clock.advance(5)
    assert client.get(f"{JOBS}/j0").json()["acceleratorSeconds"] == {"NVIDIA_H100_80GB": "0"}
    assert client.get("/training/v1/rlorTrainerJobs/local/j0/api/v1/healthz").status_code == 503
    resumed = client.post(f"{JOBS}/j0:resume")
    assert (resumed.status_code == 200) is resumable
    if not resumable:
        assert resumed.json()["error"]["status"] == "FAILED_PRECONDITION"
        assert wanted in resumed.json()["error"]["message"]


@pytest.mark.parametrize("name", [s[0] for s in STOPS])
def test_stop_faults_on_the_store_and_their_preconditions(store: Store, client, clock: FakeClock, name):
    create(client, "j1")
    act = getattr(store, name.replace("-", "_"))
    assert act("j1")["state"].startswith("JOB_STATE_")  # from CREATING too
    again = fault(client, "j1", name)
    assert again.status_code == 400 and again.json()["error"]["status"] == "FAILED_PRECONDITION"
    assert fault(client, "nope", name).status_code == 404


# -- flap ------------------------------------------------------------------------------------


def test_flap_crash_loops_through_resume_until_turned_off(client, clock: FakeClock, store: Store):
    create(client, "j1")
    create(client, "j2", inactivityTimeout="60s")
    clock.advance(10)
    assert fault(client, "j1", "flap", period=3).json()["state"] == "JOB_STATE_RUNNING"
    clock.advance(2.9)
    assert client.get("/training/v1/rlorTrainerJobs/local/j1/api/v1/healthz").status_code == 200
    assert state(client, "j1") == "JOB_STATE_RUNNING"  # a health check does not postpone the crash
    clock.advance(0.1)
    job = client.get(f"{JOBS}/j1").json()
    assert job["state"] == "JOB_STATE_FAILED"
    assert job["status"] == {"code": "INTERNAL", "message": FLAP_MESSAGE}
    assert job["acceleratorSeconds"] == {"NVIDIA_H200_141GB": "24"}  # 8 x 3 s, then freed
    for _ in range(2):  # each resume comes back through CREATING to RUNNING, then fails again
        assert client.post(f"{JOBS}/j1:resume").json()["state"] == "JOB_STATE_CREATING"
        clock.advance(10)
        assert state(client, "j1") == "JOB_STATE_RUNNING"
        clock.advance(3)
        assert state(client, "j1") == "JOB_STATE_FAILED"
    off = fault(client, "j1", "flap", off=True)
    assert off.status_code == 200 and off.json()["state"] == "JOB_STATE_FAILED"
    client.post(f"{JOBS}/j1:resume")
    clock.advance(10 + 100)
    assert state(client, "j1") == "JOB_STATE_RUNNING"
    assert state(client, "j2") == "JOB_STATE_CANCELLED"  # its own inactivity timer was untouched


def test_flap_period_longer_than_the_inactivity_timeout(client, clock: FakeClock):
    create(client, "j1", inactivityTimeout="60s")
    clock.advance(10)
    fault(client, "j1", "flap", period=100)
    clock.advance(60)
    job = client.get(f"{JOBS}/j1").json()
    assert job["state"] == "JOB_STATE_CANCELLED" and "inactivity" in job["status"]["message"]


def test_flap_off_while_running_restores_the_inactivity_timer(client, clock: FakeClock):
    create(client, "j1", inactivityTimeout="60s")
    clock.advance(10)
    fault(client, "j1", "flap", period=5)
    fault(client, "j1", "flap", off=True)
    clock.advance(59)
    assert state(client, "j1") == "JOB_STATE_RUNNING"
    clock.advance(1)
    assert state(client, "j1") == "JOB_STATE_CANCELLED"


def test_flap_set_on_a_stopped_job_applies_after_resume_and_persists_in_the_db(store: Store, db_path, clock):
    store.create_job(
        {"trainingConfig": {"baseModel": "accounts/fireworks/models/qwen3-8b"}}, {"rlorTrainerJobId": "j1"}
    )
    store.preempt("j1")
    store.flap("j1", 2.0)
    reopened = Store(db_path, provision_seconds=10, capacity=64, clock=clock)  # another CLI run
    reopened.resume_job("j1")
    clock.advance(10 + 2)
    assert reopened.get_job("j1")["status"]["message"] == FLAP_MESSAGE


def test_flap_argument_errors(client, clock: FakeClock, store: Store):
    create(client, "j1")
    for bad in ({"period": 0}, {"period": -1}, {"period": "1"}, {"period": True}, {"off": "yes"}):
        response = fault(client, "j1", "flap", **bad)
        assert response.status_code == 400, bad
    from rlorinfra.controlplane.errors import InvalidArgument

    with pytest.raises(InvalidArgument):
        store.flap("j1", 0)
    client.delete(f"{JOBS}/j1")
    clock.advance(1)
    assert fault(client, "j1", "flap").status_code == 400  # not on a tombstone


# -- drop-response ------------------------------------------------------------------------------


def arm(client: httpx.Client, operation: str, count: int = 1) -> httpx.Response:
    return client.post(FAULTS, json={"fault": "drop-response", "operation": operation, "count": count})


def assert_dropped(response: httpx.Response) -> None:
    assert response.status_code == 503
    assert response.json()["error"] == {"code": 14, "status": "UNAVAILABLE", "message": DROPPED}


def test_dropped_create_was_carried_out(client):
    armed = arm(client, "create", 2)
    assert armed.status_code == 200 and armed.json() == {"fault": "drop-response", "operation": "create", "count": 2}
    assert_dropped(create(client, "j1"))
    assert client.get(f"{JOBS}/j1").json()["state"] == "JOB_STATE_CREATING"
    assert create(client, "j1").status_code == 409  # a failed request does not use up a drop
    assert_dropped(create(client, "j2"))
    assert create(client, "j3").status_code == 200
    assert [j["name"][-2:] for j in client.get(JOBS).json()["rlorTrainerJobs"]] == ["j1", "j2", "j3"]


@pytest.mark.parametrize(
    "operation,method,suffix,after",
    [
        ("resume", "POST", ":resume", "JOB_STATE_CREATING"),
        ("cancel", "POST", ":cancel", "JOB_STATE_CANCELLING"),
        ("delete", "DELETE", "", "JOB_STATE_DELETING"),
    ],
)
def test_dropped_resume_cancel_and_delete_were_carried_out(
    client, store: Store, clock: FakeClock, operation, method, suffix, after
):
    create(client, "j1")
    clock.advance(10)
    if operation == "resume":
        store.preempt("j1")
    arm(client, operation)
    assert_dropped(client.request(method, f"{JOBS}/j1{suffix}"))
    assert state(client, "j1") == after
    assert store.armed_drops() == {}
    other = {"resume": "cancel", "cancel": "delete", "delete": "cancel"}[operation]
    arm(client, other)
    assert client.get(f"{JOBS}/j1").status_code == 200  # other routes are never dropped
    assert store.armed_drops() == {other: 1}


def test_armed_drops_live_in_the_database(db_path, store: Store, clock: FakeClock):
    store.arm_drop("create", 1)
    app = make_app(Store(db_path, provision_seconds=10, clock=clock))  # the next CLI run's app
    with httpx.Client(transport=httpx.WSGITransport(app=app), base_url="http://e", headers=KEY) as c:
        assert_dropped(create(c, "j1"))
        assert create(c, "j2").status_code == 200
    store.arm_drop("delete", 3)
    store.arm_drop("delete", 0)  # disarms
    assert store.armed_drops() == {}


@pytest.mark.parametrize(
    "payload",
    [
        {"fault": "drop-response"},
        {"fault": "drop-response", "operation": "list"},
        {"fault": "drop-response", "operation": "create", "count": -1},
        {"fault": "drop-response", "operation": "create", "count": "2"},
        {"fault": "drop-response", "operation": "create", "count": True},
    ],
)
def test_drop_response_argument_errors(client, payload):
    response = client.post(FAULTS, json=payload)
    assert response.status_code == 400 and response.json()["error"]["status"] == "INVALID_ARGUMENT"
