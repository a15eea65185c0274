"""What the postgres backend needs from the database, as docs/state.md "Backends" states it.

Each test makes its own roles on the session's cluster (no role is shared) and
checks one documented permission on the real server.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import psycopg
import pytest

from rlorinfra.errors import StateError
from rlorinfra.state.backends.postgres import PostgresBackend
from tests.state.pg_server import PASSWORD, SUPERUSER, PgServer
from tests.state.state_samples import sample_state


@pytest.fixture
def admin(pg_server: PgServer) -> Iterator[psycopg.Connection]:
    """The superuser's connection (autocommit), to create roles and schemas."""
    with psycopg.connect(pg_server.conninfo(), autocommit=True) as conn:
        yield conn


@pytest.fixture
def login(pg_server: PgServer, admin: psycopg.Connection) -> Callable[[], tuple[str, str]]:
    """Make a new login role (no privilege beyond PUBLIC's); returns its name and connection string."""

    def make() -> tuple[str, str]:
        role = f"r_{uuid.uuid4().hex[:10]}"
        admin.execute(f"CREATE ROLE {role} LOGIN PASSWORD 'pw-{role}'")
        conninfo = pg_server.conninfo(password=f"pw-{role}").replace(f"user={SUPERUSER}", f"user={role}")
        assert PASSWORD not in conninfo
        return role, conninfo

    return make


def test_a_role_owning_an_existing_schema_creates_its_tables_without_create_on_the_database(admin, login):
    # Regression: CREATE SCHEMA IF NOT EXISTS needs CREATE on the database even when the schema exists.
    role, conninfo = login()
    schema = f"s_{uuid.uuid4().hex[:10]}"
    admin.execute(f"CREATE SCHEMA {schema} AUTHORIZATION {role}")
    backend = PostgresBackend(conninfo, schema=schema, name="prod")
    try:
        assert backend.read()[1] is None  # the tables were created on first use
        written, version = backend.write(sample_state(), None)
        assert backend.read() == (written, version) and version == "1"
    finally:
        backend.close()


def test_a_new_schema_needs_create_on_the_database(admin, login):
    role, conninfo = login()
    schema = f"s_{uuid.uuid4().hex[:10]}"
    backend = PostgresBackend(conninfo, schema=schema, name="prod")
    try:
        with pytest.raises(StateError, match="permission denied for database"):
            backend.read()
        admin.execute(f"GRANT CREATE ON DATABASE postgres TO {role}")
        assert backend.read()[1] is None
    finally:
        backend.close()
        admin.execute(f"REVOKE CREATE ON DATABASE postgres FROM {role}")


def test_force_unlock_of_another_roles_session_needs_pg_signal_backend(admin, login):
    holder_role, holder_conninfo = login()
    other_role, other_conninfo = login()
    schema = f"s_{uuid.uuid4().hex[:10]}"
    admin.execute(f"CREATE SCHEMA {schema} AUTHORIZATION {holder_role}")
    holder = PostgresBackend(holder_conninfo, schema=schema, name="prod")
    holder.read()  # its tables
    admin.execute(f"GRANT USAGE ON SCHEMA {schema} TO {other_role}")
    admin.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON {schema}.states, {schema}.locks TO {other_role}")
    other = PostgresBackend(other_conninfo, schema=schema, name="prod")
    try:
        with holder.lock("apply", 0) as held:
            with pytest.raises(StateError, match="permission denied to terminate process"):
                other.force_unlock(held.id)
            assert other.lock_info() == held  # nothing was removed
            admin.execute(f"GRANT pg_signal_backend TO {other_role}")
            other.close()  # a new session: role membership is checked per session start
            other.force_unlock(held.id)
            assert other.lock_info() is None
    finally:
        holder.close()
        other.close()
