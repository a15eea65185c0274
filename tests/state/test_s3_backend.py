"""The S3 backend beyond the conformance suite: what only an object store can get wrong.

All against moto in server mode on 127.0.0.1 (``tests/state/s3_server.py``),
other runs in real processes (``s3_actor.py``).
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time

import pytest

from rlorinfra.errors import StateChangedError, StateError, StateLockedError
from rlorinfra.state.backend import FencedState
from rlorinfra.state.backends.s3 import LEASE, RENEW_EVERY, S3Backend
from rlorinfra.state.codec import encode_state
from tests.state.s3_server import (
    ACTOR,
    FAKE_ACCESS_KEY,
    FAKE_SECRET_KEY,
    actor_env,
    free_port,
    running_moto,
    stripping_proxy,
)
from tests.state.state_samples import make_record, sample_state

KEY = "envs/prod.state.json"


@pytest.fixture
def backend(moto_s3, s3_bucket) -> S3Backend:
    return S3Backend(bucket=s3_bucket, key=KEY, endpoint_url=moto_s3.endpoint_url)


def objects(moto_s3, bucket: str) -> dict[str, bytes]:
    """Every object in ``bucket``, by key."""
    client = moto_s3.client()
    listed = client.list_objects_v2(Bucket=bucket).get("Contents", [])
    return {item["Key"]: client.get_object(Bucket=bucket, Key=item["Key"])["Body"].read() for item in listed}


# -- layout --------------------------------------------------------------------------------------


def test_the_state_object_holds_the_encoded_state_and_the_backup_the_previous_one(backend, moto_s3, s3_bucket):
    first, v1 = backend.write(sample_state(), None)
    assert objects(moto_s3, s3_bucket) == {KEY: encode_state(first)}  # no backup of nothing, no probe left
    second, _ = backend.write(first.with_job("trainer-c", make_record("job-c")), v1)
    assert objects(moto_s3, s3_bucket) == {KEY: encode_state(second), KEY + ".backup": encode_state(first)}


def test_the_lock_object_holds_the_holder_and_goes_with_the_lock(backend, moto_s3, s3_bucket):
    with backend.lock("apply", 0) as info:
        assert b'"operation": "apply"' in objects(moto_s3, s3_bucket)[KEY + ".lock"]
        assert info.path == backend.describe()
    assert objects(moto_s3, s3_bucket) == {}


def test_describe_names_bucket_key_and_endpoint_host_only():
    assert S3Backend(bucket="b", key="k/s.json").describe() == "s3://b/k/s.json"
    backend = S3Backend(bucket="b", key="k", endpoint_url="http://user:hunter2@store.example:9000/")
    assert backend.describe() == "s3://b/k at store.example:9000"
    assert "hunter2" not in repr(backend)


def test_a_corrupt_state_object_is_refused_strictly(backend, moto_s3, s3_bucket):
    moto_s3.client().put_object(Bucket=s3_bucket, Key=KEY, Body=b'{"format_version": 2, "serial": 1, "serial": 2}')
    with pytest.raises(StateError, match="appears twice"):
        backend.read()


# -- fencing -------------------------------------------------------------------------------------


def test_a_writer_overtaken_between_its_check_and_its_put_writes_nothing(backend, moto_s3, s3_bucket):
    """The If-Match on the PutObject itself fences, not only the read before it."""
    first, v1 = backend.write(sample_state(), None)
    other = S3Backend(bucket=s3_bucket, key=KEY, endpoint_url=moto_s3.endpoint_url)
    overtaken: list[bytes] = []

    def other_writes_first(request, **_kwargs) -> None:
        if not overtaken and request.url.split("?")[0].endswith("/" + KEY):
            stored, _ = other.write(first.with_job("other", make_record("job-other")), v1)
            overtaken.append(encode_state(stored))

    backend._ready().meta.events.register("before-send.s3.PutObject", other_writes_first)
    with pytest.raises(StateChangedError, match="underneath"):
        backend.write(first.with_job("mine", make_record("job-mine")), v1)
    assert overtaken and objects(moto_s3, s3_bucket)[KEY] == overtaken[0]


def test_a_state_deleted_between_the_check_and_the_put_is_not_recreated(backend, moto_s3, s3_bucket):
    first, v1 = backend.write(sample_state(), None)
    client = moto_s3.client()

    def delete_first(request, **_kwargs) -> None:
        if request.url.split("?")[0].endswith("/" + KEY):
            client.delete_object(Bucket=s3_bucket, Key=KEY)  # a hand cleanup racing the write

    backend._ready().meta.events.register("before-send.s3.PutObject", delete_first)
    with pytest.raises(StateChangedError, match="underneath"):
        backend.write(first.with_job("mine", make_record("job-mine")), v1)
    assert KEY not in objects(moto_s3, s3_bucket)


# -- the conditional-write probe -----------------------------------------------------------------


def test_a_store_that_ignores_conditional_writes_is_refused_before_anything_else(moto_s3, s3_bucket):
    with stripping_proxy(moto_s3.endpoint_url) as endpoint:
        backend = S3Backend(bucket=s3_bucket, key=KEY, endpoint_url=endpoint)
        acts = [
            backend.read,
            lambda: backend.write(sample_state(), None),
            lambda: backend.lock("apply", 0).__enter__(),
            backend.lock_info,
            lambda: backend.force_unlock("any"),
        ]
        for act in acts:
            with pytest.raises(StateError) as err:
                act()
            assert "gives no mutual exclusion" in err.value.summary
            assert "If-None-Match" in err.value.detail and "postgres" in err.value.detail
    assert objects(moto_s3, s3_bucket) == {}  # nothing written, the probe cleaned up


def test_the_probe_runs_once_per_backend(backend, moto_s3):
    sent: list[str] = []
    backend.read()
    backend._ready().meta.events.register("before-send.s3.PutObject", lambda request, **_: sent.append(request.url))
    backend.write(sample_state(), None)
    with backend.lock("apply", 0):
        pass
    assert [url for url in sent if ".probe-" in url] == []
    assert len(sent) == 2  # the state, the lock


# -- other runs, in other processes --------------------------------------------------------------


def test_of_runs_racing_for_the_lock_exactly_one_wins_and_the_others_name_it(backend, moto_s3, s3_bucket):
    backend.read()  # the bucket is ready before the racers start
    command = [sys.executable, str(ACTOR), "race", moto_s3.endpoint_url, s3_bucket, KEY]
    racers = [
        subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=actor_env())
        for _ in range(4)
    ]  # all started before any is read: they race
    try:
        results = [json.loads(racer.stdout.readline()) for racer in racers]
        winners = [result["won"] for result in results if "won" in result]
        assert len(winners) == 1
        assert [result["lost"] for result in results if "lost" in result] == winners * 3
    finally:
        for racer in racers:
            racer.communicate("\n", timeout=30)
    assert backend.lock_info() is None


def test_a_sigkilled_holders_lock_frees_itself_within_2_s(backend, s3_bucket, s3_actor):
    holder = s3_actor("hold", s3_bucket, KEY, "apply")
    time.sleep(2 * RENEW_EVERY)  # it renews while it lives
    assert b'"renewals"' in backend._get(backend.lock_key).body
    holder.kill()
    killed_at = time.monotonic()
    # Nobody notices at once (S3 has no sessions), but the lock stops being renewed: a run
    # waiting 2 s plus a margin sees its ETag unchanged for a lease and breaks it.
    with backend.lock("plan", 2 + 1) as info:
        took = time.monotonic() - killed_at
        assert backend.lock_info() == info
    assert took < 2, f"the dead holder's lock took {took:.2f} s to free"
    assert backend.lock_info() is None


def test_a_waiter_shorter_than_the_lease_names_the_dead_holder_and_the_lease(backend, s3_bucket, s3_actor):
    holder = s3_actor("hold", s3_bucket, KEY, "apply")
    holder.kill()
    with pytest.raises(StateLockedError) as err:
        with backend.lock("plan", 0.3):
            pass
    assert f"rlorinfra force-unlock {holder.info['id']}" in err.value.detail
    assert str(holder.info["pid"]) in err.value.detail
    assert f"frees itself {LEASE:g} s after its last renewal" in err.value.detail
    backend.force_unlock(holder.info["id"])  # force-unlock still works at once
    with backend.lock("apply", 0) as info:
        assert backend.lock_info() == info


def test_a_holder_that_keeps_renewing_is_never_broken_by_a_waiter(backend, s3_bucket, s3_actor):
    holder = s3_actor("hold", s3_bucket, KEY, "apply")
    started = time.monotonic()
    with pytest.raises(StateLockedError) as err:
        with backend.lock("plan", 2 * LEASE + 0.5):
            pass
    assert time.monotonic() - started >= 2 * LEASE  # it waited out two leases and still did not break it
    assert err.value.holder["id"] == holder.info["id"]
    assert re.search(r"saw the holder renew its lock \d+\.\d s ago", err.value.detail), err.value.detail
    assert backend.lock_info().id == holder.info["id"]
    holder.release()
    assert holder.proc.stdout.read().strip() == "released"
    assert backend.lock_info() is None


def test_a_paused_holder_loses_its_lock_after_the_lease_and_writes_nothing_when_resumed(
    backend, moto_s3, s3_bucket, s3_actor
):
    first, _ = backend.write(sample_state(), None)
    paused = s3_actor("late-write", s3_bucket, KEY)  # locked and read, waiting to write
    paused.proc.send_signal(signal.SIGSTOP)
    try:
        with backend.lock("apply", 2 + 1):  # no force-unlock: the lease runs out
            fenced = FencedState(backend)
            mine = fenced.write(fenced.read().with_job("mine", make_record("job-mine")))
    finally:
        paused.proc.send_signal(signal.SIGCONT)
    before = objects(moto_s3, s3_bucket)
    paused.release()  # it wakes up: its renewal fails, and so does its write
    assert paused.proc.stdout.read().splitlines()[0] == "refused: State changed underneath this run"
    assert paused.proc.returncode == 0
    assert objects(moto_s3, s3_bucket) == before == {KEY: encode_state(mine), KEY + ".backup": encode_state(first)}


def test_a_force_unlocked_holder_stops_renewing_without_a_word(backend, s3_bucket):
    other = S3Backend(bucket=s3_bucket, key=KEY, endpoint_url=backend.endpoint_url)
    with other.lock("apply", 0) as theirs:
        lease = other._lease
        backend.force_unlock(theirs.id)
        with backend.lock("apply", 0) as mine:
            assert lease.lost.wait(3 * RENEW_EVERY)  # its renewal met someone else's lock: it stopped
            time.sleep(RENEW_EVERY)
            assert backend.lock_info() == mine
            assert not lease._thread.is_alive()
    assert backend.lock_info() is None  # its release left my (already released) lock alone


def test_force_unlock_of_a_live_holder_is_not_thrown_off_by_its_renewals(backend, s3_bucket, monkeypatch):
    other = S3Backend(bucket=s3_bucket, key=KEY, endpoint_url=backend.endpoint_url)
    with other.lock("apply", 0) as theirs:
        stale = backend._get(backend.lock_key)
        deadline = time.monotonic() + 3 * RENEW_EVERY
        while backend._get(backend.lock_key).etag == stale.etag:  # its next renewal moves the ETag
            assert time.monotonic() < deadline, "the holder never renewed its lease"
            time.sleep(0.05)
        reads = iter([stale])  # force-unlock's own read lands just before that renewal
        real_get = backend._get
        monkeypatch.setattr(backend, "_get", lambda key: next(reads, None) or real_get(key))
        backend.force_unlock(theirs.id)
        assert real_get(backend.lock_key) is None
        assert other._lease.lost.wait(3 * RENEW_EVERY)  # the holder learns it lost the lock


# -- errors and secrets --------------------------------------------------------------------------


def test_a_missing_bucket_is_named(moto_s3):
    backend = S3Backend(bucket="no-such-bucket-here", key=KEY, endpoint_url=moto_s3.endpoint_url)
    with pytest.raises(StateError, match="the bucket does not exist") as err:
        backend.read()
    assert "rlorinfra never creates buckets" in err.value.detail


def test_an_unreachable_endpoint_is_named(moto_s3):
    backend = S3Backend(bucket="b", key=KEY, endpoint_url=f"http://127.0.0.1:{free_port()}")
    with pytest.raises(StateError, match="unreachable") as err:
        backend.read()
    assert "endpoint_url" in err.value.detail


def test_credentials_the_store_refuses_are_reported_as_access_denied(moto_s3):
    # This moto checks every request's credentials against its (empty) IAM: ours are unknown.
    with running_moto(INITIAL_NO_AUTH_ACTION_COUNT="0") as endpoint:
        with pytest.raises(StateError, match="access denied") as err:
            S3Backend(bucket="b", key=KEY, endpoint_url=endpoint).read()
    assert "s3:PutObject" in err.value.detail and "s3:ListBucket on the bucket" in err.value.detail
    assert FAKE_SECRET_KEY not in str(err.value) and FAKE_ACCESS_KEY not in str(err.value)


def test_no_credential_appears_in_any_error_or_object(backend, moto_s3, s3_bucket, s3_actor):
    texts = [repr(backend), backend.describe()]

    def caught(act) -> None:
        with pytest.raises(StateError) as err:
            act()
        texts.extend([str(err.value), repr(err.value), repr(err.value.args)])

    first, v1 = backend.write(sample_state(), None)
    backend.write(first.with_job("c", make_record("job-c")), v1)
    caught(lambda: backend.write(sample_state(), v1))
    holder = s3_actor("hold", s3_bucket, KEY, "apply")
    caught(lambda: backend.lock("plan", 0).__enter__())
    caught(lambda: backend.force_unlock("wrong"))
    texts.append(repr(backend.lock_info()))
    holder.release()
    caught(lambda: S3Backend(bucket="missing-bucket", key=KEY, endpoint_url=moto_s3.endpoint_url).read())
    caught(lambda: S3Backend(bucket="b", key=KEY, endpoint_url=f"http://127.0.0.1:{free_port()}").read())
    with stripping_proxy(moto_s3.endpoint_url) as endpoint:
        caught(lambda: S3Backend(bucket=s3_bucket, key=KEY, endpoint_url=endpoint).read())
    stored = objects(moto_s3, s3_bucket)
    assert set(stored) == {KEY, KEY + ".backup"}
    for secret in (FAKE_SECRET_KEY, FAKE_ACCESS_KEY):
        assert not [text for text in texts if secret in text]
        assert not [key for key, body in stored.items() if secret.encode() in body]


def test_a_broken_holder_letting_go_leaves_the_next_runs_lock_alone(backend, s3_bucket, s3_actor):
    holder = s3_actor("hold", s3_bucket, KEY, "apply")
    backend.force_unlock(holder.info["id"])
    with backend.lock("apply", 0) as info:
        holder.release()  # it finishes late and releases "its" lock
        assert holder.proc.stdout.read().strip() == "released"
        assert backend.lock_info() == info
    assert backend.lock_info() is None
