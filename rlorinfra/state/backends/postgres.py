"""The postgres backend: many states in one database, one row each (DESIGN.md §4).

Tables, created on first use in ``schema``: ``states`` (one row per state
``name``: the JSONB document exactly as ``encode_state`` makes it, its serial
and lineage, the previous document as ``backup``, the update time) and
``locks`` (one row per held lock: the holder's info and its server pid).

The lock is a session advisory lock on a key derived from schema and name, held
by a dedicated connection for the whole operation: the server drops it when the
holder's session ends, however the holder dies. Writes are fenced: ``UPDATE …
WHERE serial = expected`` in a transaction, so a holder whose lock was broken
cannot overwrite the run that came after it.

psycopg is imported lazily (only this module may import it; an install without
the ``postgres`` extra still imports rlorinfra). The connection string is kept
private: errors carry psycopg's text with the password and the whole conninfo
redacted, and ``describe``/``repr`` name only database, host, port and schema.
"""

from __future__ import annotations

import hashlib
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, suppress
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from rlorinfra.errors import StateError
from rlorinfra.state.backend import StateBackend, Version, next_state, state_changed_error
from rlorinfra.state.codec import SUPPORTED_FORMAT_VERSION, decode_state, encode_state
from rlorinfra.state.lock import INITIAL_BACKOFF, MAX_BACKOFF, LockInfo, lock_held_error
from rlorinfra.state.model import State

REDACTED = "<redacted>"
CONNECT_TIMEOUT = 10  # seconds; an unreachable server fails instead of hanging the run
ANSWER_TIMEOUT = 30.0  # seconds the server may take to answer a statement before the run gives up on it
# TCP keepalives on every session: a server host that vanished (a partition, a dead machine) is noticed
# by the kernel even on the idle lock session, instead of after the default two hours.
KEEPALIVES: dict[str, Any] = {"keepalives": 1, "keepalives_idle": 10, "keepalives_interval": 5, "keepalives_count": 3}
TERMINATE_WAIT_MS = 5000  # force-unlock waits this long for the holder's session to end

# Serialised DDL: CREATE ... IF NOT EXISTS alone races when two processes create
# the same schema at once (unique violation in the catalog).
_DDL_LOCK_KEY = 0x726C6F72_64646C  # "rlor" "ddl"

# The tables, created once the schema exists (``_create_tables`` runs this under the DDL lock).
_TABLES = """
CREATE TABLE IF NOT EXISTS {schema}.states (
    name text PRIMARY KEY,
    data jsonb NOT NULL,
    serial bigint NOT NULL,
    lineage text NOT NULL,
    backup jsonb,
    updated timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS {schema}.locks (
    name text PRIMARY KEY,
    id text NOT NULL,
    operation text NOT NULL,
    who text NOT NULL,
    host text NOT NULL,
    pid integer NOT NULL,
    created text NOT NULL,
    path text NOT NULL,
    holder_pid integer NOT NULL
);
"""
_SCHEMA_EXISTS = "SELECT 1 FROM pg_namespace WHERE nspname = %(schema)s"

# One statement: take the advisory lock and, only if it was had, record the holder
# (replacing the row a killed holder left). Nothing returned: someone else holds it.
_LOCK = """
WITH got AS (SELECT pg_try_advisory_lock(%(key)s) AS ok)
INSERT INTO {schema}.locks AS l (name, id, operation, who, host, pid, created, path, holder_pid)
SELECT %(name)s, %(id)s, %(operation)s, %(who)s, %(host)s, %(pid)s, %(created)s, %(path)s, pg_backend_pid()
FROM got WHERE got.ok
ON CONFLICT (name) DO UPDATE SET id = EXCLUDED.id, operation = EXCLUDED.operation, who = EXCLUDED.who,
    host = EXCLUDED.host, pid = EXCLUDED.pid, created = EXCLUDED.created, path = EXCLUDED.path,
    holder_pid = EXCLUDED.holder_pid
RETURNING l.id
"""

_UNLOCK = """
WITH gone AS (DELETE FROM {schema}.locks WHERE name = %(name)s AND id = %(id)s)
SELECT pg_advisory_unlock(%(key)s)
"""

# The holder row, only while its session still holds the advisory lock: a row left
# by a killed holder is no lock.
_HOLDER = """
SELECT l.id, l.operation, l.who, l.host, l.pid, l.created, l.path, l.holder_pid
FROM {schema}.locks l
WHERE l.name = %(name)s AND EXISTS (
    SELECT 1 FROM pg_locks k
    WHERE k.locktype = 'advisory' AND k.granted AND k.pid = l.holder_pid
      AND k.database = (SELECT oid FROM pg_database WHERE datname = current_database())
      AND k.classid::bigint = %(high)s AND k.objid::bigint = %(low)s AND k.objsubid = 1
)
"""

_READ = "SELECT data::text, serial FROM {schema}.states WHERE name = %(name)s"
_READ_FOR_UPDATE = _READ + " FOR UPDATE"
_INSERT = """
INSERT INTO {schema}.states (name, data, serial, lineage) VALUES (%(name)s, %(data)s::jsonb, %(serial)s, %(lineage)s)
ON CONFLICT (name) DO NOTHING
"""
_UPDATE = """
UPDATE {schema}.states SET backup = data, data = %(data)s::jsonb, serial = %(serial)s, lineage = %(lineage)s,
    updated = now()
WHERE name = %(name)s AND serial = %(expected)s
"""
_DELETE_HOLDER = "DELETE FROM {schema}.locks WHERE name = %(name)s AND id = %(id)s"
_TERMINATE = "SELECT pg_terminate_backend(%(pid)s, %(wait)s)"


def require_driver() -> None:
    """``StateError`` saying how to install psycopg when it is missing (the ``postgres`` extra)."""
    try:
        import psycopg  # noqa: F401
    except ImportError:
        raise StateError(
            "The postgres state backend needs psycopg",
            'The config sets [state] backend = "postgres", but the PostgreSQL driver is not installed. '
            "Install it with `pip install 'rlorinfra[postgres]'` and run the command again.",
        ) from None


def lock_key(schema: str, name: str) -> int:
    """The advisory lock key of state ``name`` in ``schema``: a signed 64-bit hash of both."""
    digest = hashlib.sha256(f"rlorinfra\0{schema}\0{name}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


class PostgresBackend:
    """A ``StateBackend`` over one row of ``SCHEMA.states`` in the database ``conn_str`` names."""

    def __init__(
        self,
        conn_str: str,
        *,
        schema: str = "rlorinfra",
        name: str,
        config_path: Path | None = None,
        timeout: float = ANSWER_TIMEOUT,
    ) -> None:
        self._conn_str = conn_str
        # A silent server (partition, hung host) fails each statement after this many seconds: the
        # TCP connection to it may well look healthy, so only a client-side deadline ends the wait.
        self.timeout = timeout
        self.config_path = config_path  # only makes the force-unlock hint of a "locked" error exact
        self.schema = schema
        self.name = name
        self._secrets = _secrets_of(conn_str)
        require_driver()
        self._params = self._parse(conn_str)
        self._key = lock_key(schema, name)
        self._data_conn: Any = None  # reads and writes; opened on first use
        self._lock_conn: Any = None  # the session holding the advisory lock, while held
        self._ready = False  # the tables are known to exist
        # One statement sequence at a time on the data connection: a write's BEGIN…COMMIT
        # must not interleave with another thread's statements (apply's workers share the backend).
        self._guard = threading.RLock()

    def __repr__(self) -> str:
        return f"PostgresBackend(name={self.name!r}, schema={self.schema!r})"

    def describe(self) -> str:
        """``postgres state "NAME" (schema S, db D on HOST:PORT)``: no user, no password."""
        host = self._params.get("host") or "localhost"
        port = self._params.get("port") or "5432"
        db = self._params.get("dbname") or "the default database"
        return f'postgres state "{self.name}" (schema {self.schema}, db {db} on {host}:{port})'

    # -- read and write ------------------------------------------------------------------------

    def read(self) -> tuple[State, Version]:
        """The stored state (``State()`` when none) and its row serial as the version.

        While this backend holds the lock the read goes over the lock's session:
        a plan costs one connection and three statements.
        """
        with self._guard:
            conn = self._lock_conn if self._lock_conn is not None else self._data()
            row = self._fetch(conn, _READ, {"name": self.name})
        if row is None:
            return State(), None
        return self._decode(row[0]), str(row[1])

    def write(self, state: State, expected_version: Version) -> tuple[State, Version]:
        """Store ``state`` unless the row's serial moved since ``expected_version`` (``StateChangedError``)."""
        with self._guard, self._errors():
            written: tuple[State, Version] = self._ensured(
                lambda: self._write(expected_version, lambda current: next_state(state, current))
            )
            return written

    def write_verbatim(self, state: State, expected_version: Version) -> Version:
        """Store ``state`` with its own serial and lineage unless the row moved (``StateChangedError``)."""
        as_given = replace(state, format_version=SUPPORTED_FORMAT_VERSION)
        with self._guard, self._errors():
            written: tuple[State, Version] = self._ensured(lambda: self._write(expected_version, lambda _: as_given))
            return written[1]

    def _write(self, expected: Version, compose: Callable[[State], State | None]) -> tuple[State, Version]:
        conn = self._data()
        with self._answered(conn):
            conn.execute("BEGIN")
            try:
                result = self._write_in_transaction(conn, expected, compose)
                conn.execute("COMMIT")  # the only point where the new row becomes visible
                return result
            except BaseException:
                if not conn.closed:
                    conn.execute("ROLLBACK")
                raise

    def _write_in_transaction(
        self, conn: Any, expected: Version, compose: Callable[[State], State | None]
    ) -> tuple[State, Version]:
        """Fence on the row's serial, then store what ``compose`` makes of the current state (None: nothing)."""
        row = conn.execute(self._sql(_READ_FOR_UPDATE), {"name": self.name}).fetchone()
        found: Version = None if row is None else str(row[1])
        if found != expected:
            raise state_changed_error(self.describe(), expected, found)
        current = State() if row is None else self._decode(row[0])
        new = compose(current)
        if new is None:
            return current, expected
        params = {"name": self.name, "data": encode_state(new).decode(), "serial": new.serial, "lineage": new.lineage}
        if row is None:
            written = conn.execute(self._sql(_INSERT), params).rowcount
        else:
            written = conn.execute(self._sql(_UPDATE), {**params, "expected": int(row[1])}).rowcount
        if written != 1:  # the fence: another writer's row appeared or moved in between
            again = conn.execute(self._sql(_READ), {"name": self.name}).fetchone()
            raise state_changed_error(self.describe(), expected, None if again is None else str(again[1]))
        return new, str(new.serial)

    # -- locking -------------------------------------------------------------------------------

    def lock(self, operation: str, timeout: float) -> AbstractContextManager[LockInfo]:
        """Hold the advisory lock for ``operation``, waiting up to ``timeout`` seconds with backoff."""
        return self._held(operation, max(0.0, float(timeout)))

    def lock_info(self) -> LockInfo | None:
        """The live holder (its session still holds the advisory lock), or None."""
        with self._guard:
            conn = self._lock_conn if self._lock_conn is not None else self._data()
            return self._holder(conn)

    def force_unlock(self, lock_id: str) -> None:
        """End the holder's session and remove its row; ``StateError`` when nobody holds it or the ID differs."""
        with self._guard:
            conn = self._data()
            holder = self._holder_and_pid(conn)
            if holder is None:
                raise StateError("No lock to remove", f"The {self.describe()} is not locked. Nothing was changed.")
            info, holder_pid = holder
            if info.id != lock_id:
                raise StateError(
                    "Lock ID does not match",
                    f"The {self.describe()} is locked with ID {info.id}, not {lock_id}. Nothing was "
                    f"changed.\n\n{info.describe()}",
                )
            with self._errors(), self._answered(conn, extra=TERMINATE_WAIT_MS / 1000):
                conn.execute(_TERMINATE, {"pid": holder_pid, "wait": TERMINATE_WAIT_MS})
                conn.execute(self._sql(_DELETE_HOLDER), {"name": self.name, "id": lock_id})

    @contextmanager
    def _held(self, operation: str, timeout: float) -> Iterator[LockInfo]:
        info = self._acquire(operation, timeout)
        try:
            yield info
        finally:
            self._release(info)

    def _acquire(self, operation: str, timeout: float) -> LockInfo:
        info = LockInfo.new(self.describe(), operation)
        conn = self._connect()
        try:
            self._wait_for_lock(conn, info, timeout)
        except BaseException:
            conn.close()
            raise
        self._lock_conn = conn
        return info

    def _wait_for_lock(self, conn: Any, info: LockInfo, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        delay = INITIAL_BACKOFF
        params = {**info.to_dict(), "name": self.name, "key": self._key}
        while self._fetch(conn, _LOCK, params) is None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise lock_held_error(
                    f"The {self.describe()}",
                    self._holder(conn),
                    timeout,
                    config_path=self.config_path,
                    unavailable="the holder just let go",
                )
            time.sleep(min(delay, remaining))
            delay = min(delay * 2, MAX_BACKOFF)

    def _release(self, info: LockInfo) -> None:
        conn, self._lock_conn = self._lock_conn, None
        if conn is None:
            return
        import psycopg

        try:
            # Only our own row: after a force-unlock the row may be the next holder's. A session
            # force-unlock terminated has let the lock go already: nothing left to do then.
            with suppress(psycopg.Error, StateError), self._answered(conn):
                conn.execute(self._sql(_UNLOCK), {"name": self.name, "id": info.id, "key": self._key})
        finally:
            conn.close()

    def _holder(self, conn: Any) -> LockInfo | None:
        found = self._holder_and_pid(conn)
        return None if found is None else found[0]

    def _holder_and_pid(self, conn: Any) -> tuple[LockInfo, int] | None:
        """The live holder's info and its server pid (what force-unlock terminates)."""
        high, low = (self._key >> 32) & 0xFFFFFFFF, self._key & 0xFFFFFFFF
        row = self._fetch(conn, _HOLDER, {"name": self.name, "high": high, "low": low})
        if row is None:
            return None
        info = LockInfo(
            id=row[0], operation=row[1], who=row[2], host=row[3], pid=int(row[4]), created=row[5], path=row[6]
        )
        return info, int(row[7])

    # -- connections, SQL and errors -----------------------------------------------------------

    def _fetch(self, conn: Any, query: str, params: dict[str, Any]) -> Any:
        with self._errors():
            return self._ensured(lambda: self._answered_execute(conn, query, params))

    def _answered_execute(self, conn: Any, query: str, params: dict[str, Any]) -> Any:
        with self._answered(conn):
            return conn.execute(self._sql(query), params).fetchone()

    @contextmanager
    def _answered(self, conn: Any, *, extra: float = 0.0) -> Iterator[None]:
        """Give the server ``timeout`` (+ ``extra``) seconds to answer; then cut the session (``StateError``).

        psycopg has no client-side deadline and libpq's ``statement_timeout`` runs on
        the server, which may be the thing that is gone: a watchdog shuts the socket
        down, so libpq's wait ends with "server closed the connection".
        """
        import psycopg

        fired = threading.Event()

        def cut() -> None:
            fired.set()
            with suppress(OSError, psycopg.Error):
                dup = socket.socket(fileno=os.dup(conn.pgconn.socket))
                try:
                    dup.shutdown(socket.SHUT_RDWR)  # the socket, not just the duplicate: libpq sees EOF
                finally:
                    dup.close()

        watchdog = threading.Timer(self.timeout + extra, cut)
        watchdog.daemon = True
        watchdog.start()
        try:
            yield
        except psycopg.Error:
            if fired.is_set():
                raise self._silent_error() from None
            raise
        finally:
            watchdog.cancel()

    @contextmanager
    def _silent_on(self, error: type[Exception]) -> Iterator[None]:
        """``error`` (a connect that timed out) as the "stopped answering" ``StateError``."""
        try:
            yield
        except error:
            raise self._silent_error() from None

    def _silent_error(self) -> StateError:
        return StateError(
            "The postgres server stopped answering",
            f"The {self.describe()} did not answer within {self.timeout:g} s, so rlorinfra gave up on that "
            "connection (the server is down, hung, or the network to it is cut). Check the server and "
            "the network, then run the command again.",
        )

    def _ensured(self, run: Callable[[], Any]) -> Any:
        """``run()``; on a missing schema or table, create them and run it once more."""
        import psycopg

        try:
            return run()
        except (psycopg.errors.UndefinedTable, psycopg.errors.InvalidSchemaName):
            if self._ready:
                raise
        self._create_tables()
        return run()

    def _create_tables(self) -> None:
        """Create the schema (only if missing) and the tables, in one transaction under the DDL lock.

        Not ``CREATE SCHEMA IF NOT EXISTS``: PostgreSQL checks CREATE on the database before
        it looks for the schema, so a role given only an existing schema could never make its tables.
        """
        conn = self._data()
        with self._answered(conn), conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%(key)s)", {"key": _DDL_LOCK_KEY})
            if conn.execute(_SCHEMA_EXISTS, {"schema": self.schema}).fetchone() is None:
                conn.execute(self._sql("CREATE SCHEMA {schema}"))
            conn.execute(self._sql(_TABLES))
        self._ready = True

    def _sql(self, query: str) -> Any:
        from psycopg import sql

        return sql.SQL(query).format(schema=sql.Identifier(self.schema))

    def _data(self) -> Any:
        if self._data_conn is None or self._data_conn.closed:  # closed: psycopg saw the session drop
            self._data_conn = self._connect()
        return self._data_conn

    def _connect(self) -> Any:
        import psycopg

        with self._errors(), self._silent_on(psycopg.errors.ConnectionTimeout):
            timeout = max(1, min(CONNECT_TIMEOUT, round(self.timeout)))
            return psycopg.connect(self._conn_str, autocommit=True, connect_timeout=timeout, **KEEPALIVES)

    def close(self) -> None:
        """Close this backend's data connection (the lock's closes when it is released)."""
        if self._data_conn is not None:
            self._data_conn.close()
            self._data_conn = None

    @contextmanager
    def _errors(self) -> Iterator[None]:
        """psycopg errors as ``StateError`` with the connection string's secrets redacted."""
        import psycopg

        try:
            yield
        except psycopg.Error as err:
            text = self._redact(str(err).strip()) or type(err).__name__
            raise StateError(
                "Cannot use the postgres state",
                f"The {self.describe()} could not be used: {text}\n\nCheck that the server is up, that the "
                "connection string's user may use the database and schema, and run the command again.",
            ) from None

    def _redact(self, text: str) -> str:
        for secret in sorted(self._secrets, key=len, reverse=True):
            text = text.replace(secret, REDACTED)
        return text

    def _parse(self, conn_str: str) -> dict[str, str]:
        from psycopg import conninfo

        try:
            params = conninfo.conninfo_to_dict(conn_str)
        except Exception:  # noqa: BLE001 - its text quotes the string: never shown
            raise StateError(
                "Cannot use the postgres state",
                f'The connection string for postgres state "{self.name}" is not a valid libpq connection '
                "string (key=value pairs or a postgresql:// URI). It is not shown here: it may hold a password.",
            ) from None
        password = params.get("password")
        if password:
            self._secrets |= {str(password), quote(str(password), safe="")}
        return {key: str(value) for key, value in params.items() if key in ("host", "port", "dbname")}

    def _decode(self, text: str) -> State:
        return decode_state(text.encode(), Path(f"{self.schema}.states[{self.name}]"))


def _secrets_of(conn_str: str) -> set[str]:
    return {conn_str.strip()} - {""}


if TYPE_CHECKING:  # mypy proves the class satisfies the protocol
    _CONFORMS: StateBackend = PostgresBackend("", name="x")
