"""One conformance suite for every state backend (DESIGN.md §4, §10).

Each backend joins with one entry in ``HARNESSES``: a function that makes the
backend under test plus two ways of acting on it from outside this test, as
another rlorinfra run would: hold its lock (a real second process for the
local file) and die in the middle of a write.
"""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from rlorinfra.errors import StateChangedError, StateError, StateLockedError
from rlorinfra.state.backend import StateBackend, Version
from rlorinfra.state.backends import memory as memory_module
from rlorinfra.state.backends.local import LocalBackend
from rlorinfra.state.backends.memory import InMemoryBackend
from rlorinfra.state.backends.postgres import PostgresBackend
from rlorinfra.state.backends.s3 import S3Backend
from rlorinfra.state.codec import encode_state, same_content
from rlorinfra.state.lock import LockInfo
from rlorinfra.state.model import State
from tests.state.pg_server import PG_CRASH_WRITER, PgHolder, pg_env, unique_name
from tests.state.s3_server import ACTOR as S3_ACTOR
from tests.state.s3_server import actor_env
from tests.state.state_samples import make_record, sample_state

CRASH_WRITER = Path(__file__).with_name("crash_writer.py")


class HeldLock:
    """The lock held by someone else; ``release()`` lets it go."""

    info: LockInfo

    def release(self) -> None:
        raise NotImplementedError


@dataclass
class Harness:
    """A backend under test and what other runs can do to it."""

    backend: StateBackend
    hold_lock: Callable[[str], HeldLock]  # another run takes the lock for an operation
    crash_mid_write: Callable[[State, Version], None]  # another run dies while writing


# -- local: a state file, a second process -------------------------------------------------------


class _ProcessLock(HeldLock):
    def __init__(self, holder) -> None:
        self.holder = holder
        self.info = LockInfo.from_dict(holder.info)

    def release(self) -> None:
        self.holder.release()


def local_harness(request, tmp_path: Path, lock_holder, monkeypatch) -> Harness:
    path = tmp_path / "team" / "prod.state.json"

    def crash(state: State, expected: Version) -> None:
        proc = subprocess.run(
            [sys.executable, str(CRASH_WRITER), str(path), expected or "-"],
            input=encode_state(state),
            capture_output=True,
        )
        assert proc.returncode == -9, proc.stdout + proc.stderr  # killed by SIGKILL mid-write

    return Harness(LocalBackend(path), lambda operation: _ProcessLock(lock_holder(path, operation)), crash)


# -- memory: a thread stands in for the other run ------------------------------------------------


class _ThreadLock(HeldLock):
    def __init__(self, backend: StateBackend, operation: str) -> None:
        self._done = threading.Event()
        held = threading.Event()

        def hold() -> None:
            with backend.lock(operation, 0) as info:
                self.info = info
                held.set()
                self._done.wait()

        self._thread = threading.Thread(target=hold, daemon=True)
        self._thread.start()
        assert held.wait(10), "the holder thread never got the lock"

    def release(self) -> None:
        self._done.set()
        self._thread.join(10)


def memory_harness(request, tmp_path: Path, lock_holder, monkeypatch) -> Harness:
    backend = InMemoryBackend("conformance")

    def crash(state: State, expected: Version) -> None:
        def explode(state: State) -> bytes:
            raise RuntimeError("the writer died half way")

        with monkeypatch.context() as patch:
            patch.setattr(memory_module, "encode_state", explode)
            with pytest.raises(RuntimeError, match="half way"):
                backend.write(state, expected)

    return Harness(backend, lambda operation: _ThreadLock(backend, operation), crash)


# -- postgres: a throwaway cluster, real second processes -----------------------------------------


def postgres_harness(request, tmp_path: Path, lock_holder, monkeypatch) -> Harness:
    server = request.getfixturevalue("pg_server")
    name = unique_name("conformance")
    backend = PostgresBackend(server.conninfo(), name=name)
    request.addfinalizer(backend.close)
    holders: list[PgHolder] = []
    request.addfinalizer(lambda: [holder.kill() for holder in holders])

    def hold(operation: str) -> HeldLock:
        holders.append(PgHolder.start(server, name, operation))
        return holders[-1]

    def crash(state: State, expected: Version) -> None:
        proc = subprocess.run(
            [sys.executable, str(PG_CRASH_WRITER), name, expected or "-"],
            input=encode_state(state),
            capture_output=True,
            env=pg_env(server),
        )
        assert proc.returncode == -9, proc.stdout + proc.stderr  # killed by SIGKILL before COMMIT

    return Harness(backend, hold, crash)


# -- s3: moto in server mode, a second process -------------------------------------------------


def s3_harness(request, tmp_path: Path, lock_holder, monkeypatch) -> Harness:
    # The moto server and the bucket are fixtures: only the s3 cases start them.
    bucket = request.getfixturevalue("s3_bucket")
    endpoint = request.getfixturevalue("moto_s3").endpoint_url
    actor = request.getfixturevalue("s3_actor")
    key = "team/prod.state.json"

    def crash(state: State, expected: Version) -> None:
        proc = subprocess.run(
            [sys.executable, str(S3_ACTOR), "crash", endpoint, bucket, key, expected or "-"],
            input=encode_state(state),
            capture_output=True,
            env=actor_env(),
        )
        assert proc.returncode == -9, proc.stdout + proc.stderr  # killed by SIGKILL mid-write

    backend = S3Backend(bucket=bucket, key=key, endpoint_url=endpoint)
    return Harness(backend, lambda operation: _ProcessLock(actor("hold", bucket, key, operation)), crash)


HARNESSES = {
    "local": local_harness,
    "memory": memory_harness,
    "postgres": postgres_harness,
    "s3": s3_harness,
}


@pytest.fixture(params=sorted(HARNESSES))
def harness(request, tmp_path, lock_holder, monkeypatch) -> Harness:
    return HARNESSES[request.param](request, tmp_path, lock_holder, monkeypatch)


@pytest.fixture
def backend(harness: Harness) -> StateBackend:
    return harness.backend


def changed(state: State, name: str = "trainer-c") -> State:
    """``state`` with one more job: a content change."""
    return state.with_job(name, make_record(f"job-{name}"))


# -- read and write ------------------------------------------------------------------------------


def test_reading_nothing_gives_an_empty_state_and_no_version(backend):
    assert backend.read() == (State(), None)
    assert backend.lock_info() is None


def test_describe_names_the_backend(backend):
    assert backend.describe() and "\n" not in backend.describe()


def test_a_written_state_reads_back(backend):
    written, version = backend.write(sample_state(), None)
    assert version is not None
    assert written.serial == 1 and written.lineage
    assert same_content(written, sample_state())
    assert backend.read() == (written, version)


def test_every_change_bumps_the_serial_and_keeps_the_lineage(backend):
    first, v1 = backend.write(sample_state(), None)
    # Whatever serial and lineage the caller's value carries, the backend decides them.
    second, v2 = backend.write(replace(changed(first), serial=99, lineage="someone-else"), v1)
    assert (second.serial, second.lineage) == (2, first.lineage)
    assert v2 not in (None, v1)
    third, _ = backend.write(second.without_job("trainer-a"), v2)
    assert (third.serial, third.lineage) == (3, first.lineage)
    assert backend.read()[0] == third


def test_unchanged_content_writes_nothing(backend):
    first, v1 = backend.write(sample_state(), None)
    again, v_again = backend.write(replace(first, serial=0, lineage=None), v1)
    assert (again, v_again) == (first, v1)
    assert backend.read() == (first, v1)


def test_a_state_without_resources_reads_back_equal(backend):
    first, v1 = backend.write(sample_state(), None)
    for empty in (replace(first, resources={}), first.without_job("trainer-a").without_job("trainer-b")):
        emptied, v2 = backend.write(empty, v1)
        assert not emptied.jobs and emptied.control_plane == first.control_plane
        assert backend.read() == (emptied, v2)
        v1 = v2


def test_an_empty_state_over_nothing_stays_nothing(backend):
    assert backend.write(State(), None) == (State(), None)
    assert backend.read() == (State(), None)


@pytest.mark.parametrize("stale", ["older", "none-when-stored"])
def test_a_stale_expected_version_is_refused_and_nothing_is_written(backend, stale):
    first, v1 = backend.write(sample_state(), None)
    second, v2 = backend.write(changed(first), v1)
    expected = v1 if stale == "older" else None
    with pytest.raises(StateChangedError) as err:
        backend.write(changed(second, "trainer-d"), expected)
    assert err.value.summary == "State changed underneath this run"
    assert "Nothing was written" in err.value.detail
    assert backend.read() == (second, v2)


def test_expecting_a_state_where_there_is_none_is_refused(backend):
    with pytest.raises(StateChangedError):
        backend.write(sample_state(), "1")
    assert backend.read() == (State(), None)


def test_a_verbatim_write_keeps_the_given_serial_and_lineage(backend):
    first, v1 = backend.write(sample_state(), None)
    pushed = replace(changed(first), serial=7, lineage=first.lineage)
    v7 = backend.write_verbatim(pushed, v1)
    assert v7 not in (None, v1)
    stored, version = backend.read()
    assert (stored.serial, stored.lineage, version) == (7, first.lineage, v7)
    assert same_content(stored, pushed)
    # An ordinary write after it goes on from the pushed serial.
    after, _ = backend.write(changed(stored, "trainer-d"), v7)
    assert after.serial == 8


def test_a_verbatim_write_into_an_empty_backend_keeps_the_lineage(backend):
    version = backend.write_verbatim(replace(sample_state(), serial=4, lineage="from-a-file"), None)
    stored, read_version = backend.read()
    assert (stored.serial, stored.lineage, read_version) == (4, "from-a-file", version)


def test_a_stale_verbatim_write_is_refused_and_nothing_is_written(backend):
    first, v1 = backend.write(sample_state(), None)
    second, v2 = backend.write(changed(first), v1)
    with pytest.raises(StateChangedError):
        backend.write_verbatim(replace(changed(first, "trainer-d"), serial=9), v1)
    assert backend.read() == (second, v2)


def test_a_crash_in_the_middle_of_a_write_leaves_the_old_state(harness):
    backend = harness.backend
    first, v1 = backend.write(sample_state(), None)
    harness.crash_mid_write(changed(first), v1)
    assert backend.read() == (first, v1)
    # The next run writes as if nothing had happened.
    second, v2 = backend.write(changed(first), v1)
    assert second.serial == 2 and backend.read() == (second, v2)


# -- locking -------------------------------------------------------------------------------------


def test_the_own_lock_is_shown_while_held_and_gone_after(backend):
    with backend.lock("apply", 0) as info:
        assert info.operation == "apply" and info.id
        assert backend.lock_info() == info
    assert backend.lock_info() is None


def test_lock_info_shows_the_holder(harness):
    held = harness.hold_lock("state rm")
    try:
        shown = harness.backend.lock_info()
        assert shown == held.info
        assert shown is not None and shown.operation == "state rm"
    finally:
        held.release()
    assert harness.backend.lock_info() is None


@pytest.mark.parametrize("timeout", [0, 0.3])
def test_a_second_locker_times_out_naming_the_holder(harness, timeout):
    held = harness.hold_lock("apply")
    try:
        with pytest.raises(StateLockedError) as err:
            with harness.backend.lock("plan", timeout):
                pytest.fail("got a lock someone else holds")
        assert err.value.holder["id"] == held.info.id
        assert held.info.id in err.value.detail and "apply" in err.value.detail
        assert f"rlorinfra force-unlock {held.info.id}" in err.value.detail
    finally:
        held.release()


def test_a_waiting_locker_gets_in_once_the_holder_releases(harness):
    held = harness.hold_lock("apply")
    timer = threading.Timer(0.3, held.release)
    timer.start()
    try:
        with harness.backend.lock("plan", 30) as info:
            assert info.operation == "plan" and info.id != held.info.id
    finally:
        timer.join()


def test_force_unlock_with_a_wrong_id_is_refused(harness):
    held = harness.hold_lock("apply")
    try:
        with pytest.raises(StateError, match="does not match") as err:
            harness.backend.force_unlock("not-the-id")
        assert held.info.id in err.value.detail
        assert harness.backend.lock_info() == held.info
    finally:
        held.release()


def test_force_unlock_with_the_right_id_lets_the_next_locker_in(harness):
    backend = harness.backend
    held = harness.hold_lock("apply")
    try:
        backend.force_unlock(held.info.id)
        assert backend.lock_info() is None
        with backend.lock("apply", 0) as info:
            assert info.id != held.info.id
            assert backend.lock_info() == info
    finally:
        held.release()  # the old holder letting go must not disturb anyone
    assert backend.lock_info() is None
    with backend.lock("plan", 0):
        pass


def test_force_unlock_without_a_lock_is_refused(backend):
    with pytest.raises(StateError, match="No lock"):
        backend.force_unlock("any-id")
