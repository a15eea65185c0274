"""The state lock: contention across real processes, backoff, dead holders, force-unlock."""

from __future__ import annotations

import json
import os
import stat
import uuid
from pathlib import Path

import pytest

from rlorinfra.errors import StateError, StateLockedError
from rlorinfra.state.lock import (
    LockInfo,
    StateLock,
    force_unlock,
    lock_file_path,
    lock_info_path,
    read_lock_info,
)


@pytest.fixture
def state_path(tmp_path: Path) -> Path:
    return tmp_path / "prod.state.json"


class FakeTime:
    """A clock that only moves when slept on; records every sleep."""

    def __init__(self, on_sleep=None):
        self.now = 1000.0
        self.sleeps: list[float] = []
        self.on_sleep = on_sleep

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(round(seconds, 6))
        self.now += seconds
        if self.on_sleep:
            self.on_sleep()


def test_holder_info_is_written_0600_while_held_and_removed_after(state_path):
    with StateLock(state_path, "apply") as info:
        assert uuid.UUID(info.id).version == 4
        assert (info.operation, info.pid, info.path) == ("apply", os.getpid(), str(state_path))
        assert info.who and info.host and info.created.endswith("Z")
        on_disk = json.loads(lock_info_path(state_path).read_text())
        assert on_disk == info.to_dict()
        assert stat.S_IMODE(lock_info_path(state_path).stat().st_mode) == 0o600
    assert not lock_info_path(state_path).exists()
    assert read_lock_info(state_path) is None


def test_lock_is_reusable_after_release(state_path):
    for operation in ("plan", "apply"):
        with StateLock(state_path, operation) as info:
            assert read_lock_info(state_path) == info


def test_second_lock_in_the_same_process_is_refused(state_path):
    with StateLock(state_path, "apply") as info:
        with pytest.raises(StateLockedError) as err:
            StateLock(state_path, "plan").acquire()
        assert err.value.holder["id"] == info.id


def test_contention_with_another_process_fails_at_once_naming_the_holder(state_path, lock_holder):
    holder = lock_holder(state_path, "apply")
    fake = FakeTime()
    with pytest.raises(StateLockedError) as err:
        with StateLock(state_path, "state rm", sleep=fake.sleep, clock=fake.clock, config_path=Path("prod.toml")):
            pytest.fail("acquired a lock another process holds")
    assert fake.sleeps == []  # timeout 0: no waiting at all
    error = err.value
    assert error.summary == "Error acquiring the state lock"
    assert error.holder == holder.info
    for line in (
        f"ID:        {holder.info['id']}",
        f"Path:      {state_path}",
        "Operation: apply",
        f"Who:       {holder.info['who']}",
        f"PID:       {holder.proc.pid}",
        f"Created:   {holder.info['created']}",
    ):
        assert line in error.detail
    assert f"`rlorinfra force-unlock {holder.info['id']} -f prod.toml`" in error.detail
    assert "retry with --lock-timeout" in error.detail
    # The failed attempt did not disturb the holder's info.
    assert read_lock_info(state_path).to_dict() == holder.info


def test_timeout_waits_with_backoff_and_succeeds_once_the_holder_releases(state_path, lock_holder):
    holder = lock_holder(state_path)
    fake = FakeTime()
    fake.on_sleep = lambda: len(fake.sleeps) == 3 and holder.release()
    with StateLock(state_path, "plan", timeout=30, sleep=fake.sleep, clock=fake.clock) as info:
        assert read_lock_info(state_path) == info
    assert fake.sleeps == [0.1, 0.2, 0.4]
    assert holder.proc.returncode == 0


def test_timeout_gives_up_at_the_deadline(state_path, lock_holder):
    holder = lock_holder(state_path)
    fake = FakeTime()
    with pytest.raises(StateLockedError) as err:
        StateLock(state_path, "plan", timeout=5, sleep=fake.sleep, clock=fake.clock).acquire()
    assert fake.sleeps == [0.1, 0.2, 0.4, 0.8, 1.6, 1.9]  # doubling, capped by the deadline
    assert "waited 5 s" in err.value.detail
    assert err.value.holder["id"] == holder.info["id"]


def test_backoff_is_capped_at_two_seconds(state_path, lock_holder):
    lock_holder(state_path)
    fake = FakeTime()
    with pytest.raises(StateLockedError):
        StateLock(state_path, "plan", timeout=12, sleep=fake.sleep, clock=fake.clock).acquire()
    assert max(fake.sleeps) == 2.0
    assert sum(fake.sleeps) == pytest.approx(12)


def test_a_holder_killed_with_sigkill_does_not_block(state_path, lock_holder):
    holder = lock_holder(state_path)
    holder.kill()
    assert read_lock_info(state_path).id == holder.info["id"]  # stale info left behind
    with StateLock(state_path, "apply") as info:
        assert read_lock_info(state_path) == info  # stale info overwritten
    assert not lock_info_path(state_path).exists()


# ------------------------------------------------------------- force-unlock


def test_force_unlock_without_a_lock_is_refused(state_path):
    with pytest.raises(StateError, match="No lock to remove"):
        force_unlock(state_path, str(uuid.uuid4()))


def test_force_unlock_refuses_a_wrong_id_and_shows_the_right_one(state_path, lock_holder):
    holder = lock_holder(state_path)
    with pytest.raises(StateError) as err:
        force_unlock(state_path, "not-the-id")
    assert err.value.summary == "Lock ID does not match"
    assert holder.info["id"] in err.value.detail
    assert lock_info_path(state_path).exists() and lock_file_path(state_path).exists()
    with pytest.raises(StateLockedError):
        StateLock(state_path, "apply").acquire()


def test_force_unlock_with_the_right_id_lets_the_next_run_proceed(state_path, lock_holder):
    holder = lock_holder(state_path)  # alive and hung, as far as we know
    force_unlock(state_path, holder.info["id"])
    assert not lock_info_path(state_path).exists()
    assert not lock_file_path(state_path).exists()
    with StateLock(state_path, "apply") as info:
        # The old holder finishing must not remove the new holder's info.
        holder.release()
        assert holder.proc.returncode == 0
        assert read_lock_info(state_path) == info
    assert not lock_info_path(state_path).exists()


def test_force_unlock_of_a_dead_holders_stale_info(state_path, lock_holder):
    holder = lock_holder(state_path)
    holder.kill()
    force_unlock(state_path, holder.info["id"])
    assert not lock_info_path(state_path).exists()


def test_force_unlock_refuses_unreadable_info(state_path):
    lock_info_path(state_path).write_text("{not json")
    with pytest.raises(StateError, match="Cannot read the lock info"):
        force_unlock(state_path, "anything")


def test_locked_error_without_info_still_explains(state_path, lock_holder):
    holder = lock_holder(state_path)
    lock_info_path(state_path).unlink()  # as if the holder had not written it yet
    with pytest.raises(StateLockedError) as err:
        StateLock(state_path, "plan").acquire()
    assert "Lock Info: unavailable" in err.value.detail
    assert err.value.holder == {}
    holder.release()


def test_lock_info_round_trip():
    info = LockInfo.new(Path("s.json"), "apply")
    assert LockInfo.from_dict(json.loads(json.dumps(info.to_dict()))) == info


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs Linux /proc")
def test_a_lock_file_that_cannot_be_created_is_not_reported_as_locked():
    # /proc/<pid>/fd is where `-f /dev/stdin` fed by a pipe used to put the state: the
    # folder exists but no file can be created in it. filelock calls that "held".
    state = Path("/proc/self/fd/stdin.state.json")
    with pytest.raises(StateError) as info:
        StateLock(state, "plan").acquire()
    assert not isinstance(info.value, StateLockedError)
    assert "Cannot create the lock file" in info.value.summary
    assert "[state] path" in info.value.detail
