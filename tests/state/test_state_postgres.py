"""The postgres backend beyond the conformance suite: real server, real processes, real signals."""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time

import psycopg
import pytest

from rlorinfra.errors import StateChangedError, StateError, StateLockedError
from rlorinfra.state.backends.postgres import PostgresBackend
from rlorinfra.state.codec import encode_state
from tests.state.pg_server import PASSWORD, PgHolder, PgServer, free_port, unique_name
from tests.state.state_samples import make_record, sample_state


@pytest.fixture
def backends(pg_server: PgServer):
    """Factory of backends on the test cluster, closed after the test."""
    made: list[PostgresBackend] = []

    def make(name: str | None = None, *, schema: str = "rlorinfra", conninfo: str | None = None) -> PostgresBackend:
        made.append(PostgresBackend(conninfo or pg_server.conninfo(), schema=schema, name=name or unique_name()))
        return made[-1]

    yield make
    for backend in made:
        backend.close()


@pytest.fixture
def holders():
    """Holder processes a test starts (appended by the test), killed after it."""
    started: list[PgHolder] = []
    yield started
    for holder in started:
        if holder.proc.poll() is None:
            os.kill(holder.proc.pid, signal.SIGCONT)  # a stopped process dies only once continued
        holder.kill()


def _row(server: PgServer, query: str, *params: object) -> tuple | None:
    with psycopg.connect(server.conninfo(), autocommit=True) as conn:
        return conn.execute(query, params).fetchone()


# -- storage ---------------------------------------------------------------------------------------


def test_the_row_holds_exactly_the_encoded_state_and_the_previous_one_as_backup(pg_server, backends):
    backend = backends()
    first, v1 = backend.write(sample_state(), None)
    second, v2 = backend.write(first.with_job("trainer-c", make_record("job-c")), v1)
    row = _row(
        pg_server,
        "SELECT data = %s::jsonb, backup = %s::jsonb, serial, lineage FROM rlorinfra.states WHERE name = %s",
        encode_state(second).decode(),
        encode_state(first).decode(),
        backend.name,
    )
    assert row == (True, True, 2, first.lineage)
    assert v2 == "2"


def test_a_hand_broken_row_is_refused_by_the_strict_decoder(pg_server, backends):
    backend = backends()
    backend.write(sample_state(), None)
    with psycopg.connect(pg_server.conninfo(), autocommit=True) as conn:
        conn.execute(
            "UPDATE rlorinfra.states SET data = jsonb_set(data, '{serial}', '\"two\"') WHERE name = %s",
            (backend.name,),
        )
    with pytest.raises(StateError, match="serial"):
        backend.read()


def test_two_processes_creating_the_tables_at_once_both_succeed(backends):
    schema = f"s_{unique_name('fresh').replace('-', '_')}"
    pair = [backends(schema=schema), backends(schema=schema)]
    errors: list[BaseException] = []
    barrier = threading.Barrier(2)

    def write(backend: PostgresBackend) -> None:
        barrier.wait()
        try:
            backend.write(sample_state(), None)
        except BaseException as err:  # noqa: BLE001 - collected, asserted below
            errors.append(err)

    threads = [threading.Thread(target=write, args=(backend,)) for backend in pair]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert errors == []
    assert all(backend.read()[1] == "1" for backend in pair)


def test_describe_and_repr_name_no_user_and_no_password(pg_server, backends):
    backend = backends("prod")
    assert backend.describe() == f'postgres state "prod" (schema rlorinfra, db postgres on 127.0.0.1:{pg_server.port})'
    for text in (backend.describe(), repr(backend)):
        assert PASSWORD not in text and "rlorinfra_test" not in text


# -- locks -----------------------------------------------------------------------------------------


def test_two_names_in_one_database_do_not_block_each_other(pg_server, backends, holders):
    holders.append(PgHolder.start(pg_server, "team-a", "apply"))
    other = backends("team-b")
    with other.lock("apply", 0) as info:
        assert other.lock_info() == info
    with pytest.raises(StateLockedError):
        with backends("team-a").lock("plan", 0):
            pass


def test_a_killed_holder_frees_the_lock_within_2s_and_the_state_is_at_its_last_commit(pg_server, backends, holders):
    backend = backends()
    first, v1 = backend.write(sample_state(), None)
    holder = PgHolder.start(pg_server, backend.name, "apply", write=True)
    holders.append(holder)
    holder.proc.kill()
    holder.proc.wait()
    start = time.monotonic()
    with backend.lock("apply", 2) as info:
        assert time.monotonic() - start < 2
        assert backend.lock_info() == info
    assert backend.read() == (first, v1)


def test_a_paused_holder_whose_lock_was_broken_cannot_write(pg_server, backends, holders):
    backend = backends()
    first, v1 = backend.write(sample_state(), None)
    holder = PgHolder.start(pg_server, backend.name, "apply", write=True)  # has read v1
    holders.append(holder)
    os.kill(holder.proc.pid, signal.SIGSTOP)
    try:
        backend.force_unlock(holder.info.id)
        with backend.lock("apply", 5):
            state, version = backend.read()
            mine, v2 = backend.write(state.with_job("from-the-next-run", make_record("job-next")), version)
    finally:
        os.kill(holder.proc.pid, signal.SIGCONT)
    assert holder.release() == ["StateChangedError", "released"]
    assert backend.read() == (mine, v2)
    assert "from-the-paused-holder" not in mine.jobs and "from-the-next-run" in mine.jobs


def test_a_wrong_id_force_unlock_changes_nothing(pg_server, backends, holders):
    holder = PgHolder.start(pg_server, unique_name(), "apply")
    holders.append(holder)
    backend = backends(holder.info.path.split('"')[1])
    with pytest.raises(StateError, match="does not match") as err:
        backend.force_unlock("not-the-id")
    assert holder.info.id in err.value.detail
    assert backend.lock_info() == holder.info and holder.proc.poll() is None
    with pytest.raises(StateLockedError) as locked:
        with backend.lock("plan", 0):
            pass
    assert f"rlorinfra force-unlock {holder.info.id}" in locked.value.detail
    assert json.dumps(locked.value.holder) == json.dumps(holder.info.to_dict())


# -- performance -------------------------------------------------------------------------------------


def test_lock_read_unlock_of_a_plan_takes_at_most_4_round_trips(backends, monkeypatch):
    backend = backends()
    backend.write(sample_state(), None)
    backend.close()
    trips: list[str] = []
    real_execute, real_connect = psycopg.Connection.execute, psycopg.connect

    def execute(self, query, params=None, **kwargs):
        trips.append(f"execute {str(query)[:40]}")
        return real_execute(self, query, params, **kwargs)

    def connect(*args, **kwargs):
        trips.append("connect")
        return real_connect(*args, **kwargs)

    monkeypatch.setattr(psycopg.Connection, "execute", execute)
    monkeypatch.setattr(psycopg, "connect", connect)
    with backend.lock("plan", 0):
        state, _ = backend.read()
    assert state.jobs  # a real read happened
    assert trips[0] == "connect" and len(trips) <= 4, trips


# -- secrets -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", ["wrong password", "unreachable port"])
def test_the_password_never_appears_in_an_error(pg_server, backends, case):
    secret = "Zz-" + PASSWORD if case == "wrong password" else PASSWORD
    port = free_port() if case == "unreachable port" else None
    conninfo = pg_server.conninfo(password=secret, port=port)
    backend = backends(conninfo=conninfo)
    for action in (backend.read, lambda: backend.write(sample_state(), None), backend.lock_info):
        with pytest.raises(StateError) as err:
            action()
        text = f"{err.value} {err.value.summary} {err.value.detail} {err.value!r}"
        assert secret not in text and conninfo not in text
        assert err.value.__cause__ is None and err.value.__suppress_context__
        assert "could not be used" in err.value.detail
    with pytest.raises(StateError) as err:
        with backend.lock("apply", 0):
            pass
    assert secret not in f"{err.value} {err.value.detail}"


def test_a_password_in_a_uri_is_redacted_too(pg_server, backends):
    conninfo = f"postgresql://rlorinfra_test:Zz%2F{PASSWORD}@127.0.0.1:{pg_server.port}/postgres"
    backend = backends(conninfo=conninfo)
    with pytest.raises(StateError) as err:
        backend.read()
    assert "password authentication failed" in err.value.detail
    assert PASSWORD not in err.value.detail and "Zz%2F" not in err.value.detail


def test_an_invalid_connection_string_is_not_quoted(backends):
    with pytest.raises(StateError) as err:
        backends(conninfo=f"host=127.0.0.1 password={PASSWORD} bogus")
    assert PASSWORD not in f"{err.value} {err.value.detail}"


def test_threads_sharing_one_backend_lose_no_acknowledged_write(backends):
    # apply's workers share one backend: a write's BEGIN…COMMIT must not interleave with
    # another thread's statements on the same connection (a rollback would undo the other's write).
    backend = backends()
    backend.write(sample_state(), None)
    acknowledged: list[str] = []
    errors: list[BaseException] = []

    def worker(index: int) -> None:
        for step in range(8):
            name = f"w{index}-{step}"
            while True:
                state, version = backend.read()
                try:
                    backend.write(state.with_job(name, make_record(f"job-{name}")), version)
                except StateChangedError:
                    continue
                except BaseException as err:  # noqa: BLE001 - collected, asserted below
                    errors.append(err)
                    return
                acknowledged.append(name)
                break

    threads = [threading.Thread(target=worker, args=(index,)) for index in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    stored, version = backend.read()
    assert sorted(acknowledged) == sorted(name for name in stored.jobs if name.startswith("w"))
    assert len(acknowledged) == 32 and version == str(1 + 32)


def test_a_missing_driver_says_which_extra_to_install(pg_server, monkeypatch):
    monkeypatch.setitem(sys.modules, "psycopg", None)  # what `import psycopg` meets without the extra
    with pytest.raises(StateError, match="needs psycopg") as err:
        PostgresBackend(pg_server.conninfo(), name="prod")
    assert "pip install 'rlorinfra[postgres]'" in err.value.detail


def test_the_locked_error_names_the_config_to_force_unlock_with(pg_server, backends, holders, tmp_path):
    holder = PgHolder.start(pg_server, unique_name(), "apply")
    holders.append(holder)
    name = holder.info.path.split('"')[1]
    backend = PostgresBackend(pg_server.conninfo(), name=name, config_path=tmp_path / "prod.toml")
    try:
        with pytest.raises(StateLockedError) as err:
            with backend.lock("plan", 0.2):
                pass
    finally:
        backend.close()
    assert f"rlorinfra force-unlock {holder.info.id} -f {tmp_path / 'prod.toml'}" in err.value.detail
    assert "(waited 0.2 s)" in err.value.detail


def test_a_dropped_connection_fails_one_call_and_the_next_reconnects(pg_server, backends):
    backend = backends()
    written, version = backend.write(sample_state(), None)
    with psycopg.connect(pg_server.conninfo(), autocommit=True) as conn:  # e.g. a server restart
        conn.execute(
            "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity "
            "WHERE pid <> pg_backend_pid() AND backend_type = 'client backend'"
        )
    with pytest.raises(StateError, match="could not be used") as err:
        backend.read()
    assert PASSWORD not in err.value.detail
    assert backend.read() == (written, version)
