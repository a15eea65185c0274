"""Time-driven lifecycle, on a fake clock: CREATING -> PENDING -> RUNNING, stop, resume, delete."""

from __future__ import annotations

import pytest

from rlorinfra.controlplane.store import Store
from tests.controlplane.helpers import JOBS, POLICY_SHAPE, FakeClock, create

LLAMA_SHAPE = "accounts/fireworks/trainingShapes/ts-llama-v3p1-70b-policy"  # 2 nodes x 8


def state(client, job_id: str) -> str:
    return client.get(f"{JOBS}/{job_id}").json()["state"]


def test_create_is_creating_for_the_provision_time_then_running(client, clock: FakeClock):
    job = create(client, "j1").json()
    assert job["state"] == "JOB_STATE_CREATING"
    clock.advance(9.9)
    assert state(client, "j1") == "JOB_STATE_CREATING"
    clock.advance(0.1)
    job = client.get(f"{JOBS}/j1").json()
    assert job["state"] == "JOB_STATE_RUNNING"
    assert job["status"] == {"code": "OK", "message": ""}
    assert job["directRouteHandle"] == "http://emulator/training/v1/rlorTrainerJobs/local/j1"
    assert "updateTime" not in job  # not a field of the RLOR resource (PROTOCOL.md §3.5)
    assert "completedTime" not in job


def test_capacity_queues_jobs_in_fifo_order(client, clock: FakeClock):
    # capacity 64: four 16-accelerator jobs fit, the next two wait in order.
    for i in range(6):
        create(
            client,
            f"j{i}",
            shape=LLAMA_SHAPE,
            trainingConfig={"baseModel": "accounts/fireworks/models/llama-v3p1-70b-instruct"},
        )
        clock.advance(0.5)
    clock.advance(10)
    states = [state(client, f"j{i}") for i in range(6)]
    assert states == ["JOB_STATE_RUNNING"] * 4 + ["JOB_STATE_PENDING"] * 2
    accel = next(iter(client.get(f"{JOBS}/j4").json()["acceleratorSeconds"]))
    assert (
        client.get(f"{JOBS}/j4").json()["status"]["message"] == f"waiting for capacity: needs 16 × {accel}, only 0 free"
    )
    assert client.get(f"{JOBS}/j5").json()["status"]["message"] == f"queued behind 1 job for {accel}"
    client.post(f"{JOBS}/j1:cancel")
    assert [state(client, f"j{i}") for i in (4, 5)] == ["JOB_STATE_RUNNING", "JOB_STATE_PENDING"]
    client.delete(f"{JOBS}/j2")
    assert state(client, "j5") == "JOB_STATE_RUNNING"


def test_a_job_larger_than_the_capacity_waits_without_blocking_others(root_client, client, clock: FakeClock):
    create(root_client, "huge", shape=None, manual=True, nodeCount=9, trainingConfig={"acceleratorCount": 8})
    clock.advance(1)
    create(root_client, "small", shape=None, manual=True, trainingConfig={"acceleratorCount": 8})
    clock.advance(20)
    assert state(client, "huge") == "JOB_STATE_PENDING"
    assert state(client, "small") == "JOB_STATE_RUNNING"
    message = client.get(f"{JOBS}/huge").json()["status"]["message"]
    assert message.startswith("waiting for capacity: needs 72 × ") and "more than the" in message


def test_inactivity_timeout_auto_stops_a_running_job(client, clock: FakeClock):
    create(client, "idle", inactivityTimeout="60s")
    clock.advance(10)
    assert state(client, "idle") == "JOB_STATE_RUNNING"
    clock.advance(50)
    assert client.get("/training/v1/rlorTrainerJobs/local/idle/api/v1/healthz").status_code == 200
    clock.advance(10)  # 60 s after it started RUNNING: a health probe is not activity
    job = client.get(f"{JOBS}/idle").json()
    assert job["state"] == "JOB_STATE_CANCELLED"
    assert job["status"]["code"] == "CANCELLED"
    assert "inactivity" in job["status"]["message"]
    assert job["completedTime"].startswith("2025-06-15T15:07:50")  # start 1_750_000_000 + 10 + 60 s


def test_default_inactivity_timeout_is_an_hour(client, clock: FakeClock):
    create(client, "j1")
    clock.advance(10 + 3599)
    assert state(client, "j1") == "JOB_STATE_RUNNING"
    clock.advance(1)
    assert state(client, "j1") == "JOB_STATE_CANCELLED"


def test_inactivity_fires_at_its_due_time_even_when_read_much_later(client, clock: FakeClock):
    create(client, "j1", inactivityTimeout="100s")
    clock.advance(10_000)
    job = client.get(f"{JOBS}/j1").json()
    assert job["state"] == "JOB_STATE_CANCELLED"
    assert job["completedTime"].startswith("2025-06-15T15:08:")  # start 1_750_000_000 + 10 + 100 s


def test_cancel_goes_through_cancelling_and_frees_capacity(client, clock: FakeClock):
    create(client, "j1")
    clock.advance(10)
    job = client.post(f"{JOBS}/j1:cancel", headers={"Content-Type": "application/json"}).json()
    assert job["state"] == "JOB_STATE_CANCELLING"
    clock.advance(1)
    job = client.get(f"{JOBS}/j1").json()
    assert job["state"] == "JOB_STATE_CANCELLED"
    assert "completedTime" in job
    # cancelling again is a no-op
    assert client.post(f"{JOBS}/j1:cancel").json()["state"] == "JOB_STATE_CANCELLED"


@pytest.mark.parametrize("stop", ["cancel", "preempt", "fail"])
def test_resume_leaves_the_stopped_state_before_answering(client, clock: FakeClock, store: Store, stop: str):
    create(client, "j1")
    clock.advance(10)
    if stop == "cancel":
        client.post(f"{JOBS}/j1:cancel")
        clock.advance(1)
    else:
        getattr(store, stop)("j1")
    resumed = client.post(f"{JOBS}/j1:resume")
    assert resumed.status_code == 200
    assert resumed.json()["state"] == "JOB_STATE_CREATING"
    assert resumed.json()["status"] == {"code": "OK", "message": ""}
    assert "completedTime" not in resumed.json()
    clock.advance(10)
    assert state(client, "j1") == "JOB_STATE_RUNNING"


@pytest.mark.parametrize("when", ["CREATING", "RUNNING"])
def test_resume_of_a_live_job_is_a_failed_precondition(client, clock: FakeClock, when: str):
    create(client, "j1")
    if when == "RUNNING":
        clock.advance(10)
    response = client.post(f"{JOBS}/j1:resume")
    assert response.status_code == 400
    assert response.json()["error"]["status"] == "FAILED_PRECONDITION"
    assert response.json()["error"]["code"] == 9
    assert f"JOB_STATE_{when}" in response.json()["error"]["message"]


def test_delete_leaves_an_archived_tombstone_that_lists_hide_and_ids_never_reuse(
    client, clock: FakeClock, store: Store
):
    create(client, "j1")
    create(client, "j2")
    clock.advance(10)
    assert client.delete(f"{JOBS}/j1").json() == {}
    assert state(client, "j1") == "JOB_STATE_DELETING"
    assert [j["name"].rsplit("/", 1)[1] for j in client.get(JOBS).json()["rlorTrainerJobs"]] == ["j1", "j2"]
    clock.advance(1)
    tomb = client.get(f"{JOBS}/j1")
    assert tomb.status_code == 200 and tomb.json()["state"] == "JOB_STATE_ARCHIVED"
    assert [j["name"].rsplit("/", 1)[1] for j in client.get(JOBS).json()["rlorTrainerJobs"]] == ["j2"]
    assert client.get(JOBS, params={"filter": "state=JOB_STATE_ARCHIVED"}).json()["rlorTrainerJobs"] == []
    stamp = store._conn().execute("SELECT update_time FROM jobs WHERE job_id = 'j1'").fetchone()[0]
    clock.advance(5)
    again = client.delete(f"{JOBS}/j1")
    assert again.status_code == 200
    assert client.get(f"{JOBS}/j1").json() == tomb.json()  # a no-op: the retention clock is not reset
    assert store._conn().execute("SELECT update_time FROM jobs WHERE job_id = 'j1'").fetchone()[0] == stamp
    conflict = create(client, "j1")
    assert conflict.status_code == 409
    assert conflict.json()["error"] == {
        "code": 6,
        "status": "ALREADY_EXISTS",
        "message": conflict.json()["error"]["message"],
    }
    assert "cannot be reused" in conflict.json()["error"]["message"]
    cancel = client.post(f"{JOBS}/j1:cancel")
    assert cancel.status_code == 400
    assert cancel.json()["error"]["message"] == "cannot cancel job in state: JOB_STATE_ARCHIVED"
    assert client.post(f"{JOBS}/j1:resume").status_code == 400


def test_preempt_fail_set_idle_and_mark_unhealthy(store: Store, clock: FakeClock, client):
    for job_id in ("a", "b", "c", "d"):
        create(client, job_id)
    clock.advance(10)
    preempted = store.preempt("a")
    assert preempted["state"] == "JOB_STATE_FAILED"
    assert preempted["status"] == {"code": "UNAVAILABLE", "message": "pod preempted"}
    failed = store.fail("b", message="OOM in trainer")
    assert failed["status"] == {"code": "INTERNAL", "message": "OOM in trainer"}
    idle = store.set_idle("c")
    assert idle["state"] == "JOB_STATE_IDLE" and "idle" in idle["status"]["message"]
    assert client.get("/training/v1/rlorTrainerJobs/local/c/api/v1/healthz").status_code == 503
    health = "/training/v1/rlorTrainerJobs/local/d/api/v1/healthz"
    assert client.get(health).status_code == 200
    assert store.mark_unhealthy("d")["state"] == "JOB_STATE_RUNNING"
    assert client.get(health).status_code == 503
    store.mark_unhealthy("d", unhealthy=False)
    assert client.get(health).status_code == 200
    clock.advance(3600)  # the inactivity timer keeps running while idle
    assert store.get_job("c")["state"] == "JOB_STATE_CANCELLED"


def test_fault_on_unknown_job_raises_not_found(store: Store):
    from rlorinfra.controlplane.store import NotFound

    for fault in (store.preempt, store.fail, store.set_idle, store.mark_unhealthy):
        with pytest.raises(NotFound):
            fault("nope")


def test_resume_clears_the_unhealthy_mark(store: Store, clock: FakeClock, client):
    create(client, "j1")
    clock.advance(10)
    store.mark_unhealthy("j1")
    store.preempt("j1")
    client.post(f"{JOBS}/j1:resume")
    clock.advance(10)
    assert client.get("/training/v1/rlorTrainerJobs/local/j1/api/v1/healthz").status_code == 200


def test_health_is_503_unless_running(client, clock: FakeClock):
    create(client, "j1")
    health = "/training/v1/rlorTrainerJobs/local/j1/api/v1/healthz"
    response = client.get(health)
    assert response.status_code == 503
    assert "JOB_STATE_CREATING" in response.json()["error"]["message"]
    clock.advance(10)
    assert client.get(health).json() == {"status": "ok"}
    assert client.get("/training/v1/rlorTrainerJobs/local/nope/api/v1/healthz").status_code == 404


def test_two_stores_on_one_database_see_one_world(store: Store, db_path, clock: FakeClock, client):
    other = Store(db_path, provision_seconds=10, capacity=64, clock=clock)
    create(client, "j1")
    clock.advance(10)
    assert other.get_job("j1")["state"] == "JOB_STATE_RUNNING"
    other.preempt("j1")
    assert state(client, "j1") == "JOB_STATE_FAILED"


def test_settings_of_the_creating_process_are_recorded(db_path, clock: FakeClock):
    Store(db_path, provision_seconds=3, capacity=7, clock=clock)
    later = Store(db_path, provision_seconds=5, capacity=9, clock=clock)
    assert later.settings()["provision_seconds"] == "3.0"
    assert later.settings()["capacity"] == "7"
    assert later.provision_seconds == 5  # the constructor wins for this process


def test_a_bigger_capacity_in_a_new_process_starts_queued_jobs(db_path, clock: FakeClock):
    small = Store(db_path, provision_seconds=0, capacity=8, clock=clock)
    body = {"trainingConfig": {"baseModel": "accounts/fireworks/models/qwen3-8b"}}
    small.create_job(body, {"rlorTrainerJobId": "a", "trainingShape": POLICY_SHAPE})
    small.create_job(body, {"rlorTrainerJobId": "b", "trainingShape": POLICY_SHAPE})
    assert small.get_job("b")["state"] == "JOB_STATE_PENDING"
    big = Store(db_path, provision_seconds=0, capacity=16, clock=clock)
    assert big.get_job("b")["state"] == "JOB_STATE_RUNNING"


def test_advance_only_looks_at_due_jobs(store: Store):
    """The due-time lookup is an index search, not a scan of every job."""
    conn = store._conn()
    plan = conn.execute(
        "EXPLAIN QUERY PLAN SELECT * FROM jobs WHERE due_at IS NOT NULL AND due_at <= ? "
        "ORDER BY due_at, job_id LIMIT 1",
        (0,),
    ).fetchall()
    assert any("jobs_due" in row[3] for row in plan)


def test_queue_messages_follow_the_queue_as_it_drains(store, clock):
    body = {
        "trainingConfig": {
            "baseModel": "accounts/fireworks/models/qwen3-8b",
            "acceleratorType": "NVIDIA_H100_80GB",
            "acceleratorCount": 32,
        },
        "nodeCount": 1,
    }
    for name in ("a", "b", "c"):
        store.create_job(dict(body, displayName=name), {"rlorTrainerJobId": name, "skipValidations": "true"})
    clock.advance(11)  # 64 accelerators, 32 each: a and b run, c waits first in line
    store.create_job(dict(body, displayName="d"), {"rlorTrainerJobId": "d", "skipValidations": "true"})
    clock.advance(11)
    assert store.get_job("d")["status"]["message"] == "queued behind 1 job for NVIDIA_H100_80GB"
    store.cancel_job("a")  # c starts; d is now first in line
    assert store.get_job("c")["state"] == "JOB_STATE_RUNNING"
    assert store.get_job("d")["status"]["message"].startswith("waiting for capacity: needs 32 × NVIDIA_H100_80GB")
