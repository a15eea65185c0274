"""Fixtures for the end-to-end backend suite: the served emulator, the CLI as real
subprocesses, and a state backend (local, PostgreSQL or S3) behind one config.

The servers are the state suite's session fixtures (``pg_server``, ``moto_s3``,
``s3_bucket``), re-exported here so both folders share one cluster and one moto
per session. Secrets reach the CLI only through its environment; a ``Bench``
keeps everything the CLI printed so the tests can look for them afterwards.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import API_KEY, World, jobs_toml, serve_world
from tests.reliability.helpers import subprocess_env

# The state suite's session servers (its conftest imports them in the order they need).
from tests.state.conftest import moto_s3, pg_server, s3_bucket  # noqa: F401 - re-exported fixtures
from tests.state.pg_server import PASSWORD
from tests.state.s3_server import FAKE_SECRET_KEY, REGION

HOLDER = Path(__file__).with_name("holder.py")
S3_KEY = "team/prod.rlorinfra.json"
PG_ENV = "PG_CONN_STR"


@dataclass
class Run:
    """One finished CLI run."""

    code: int
    out: str
    err: str

    @property
    def text(self) -> str:
        return self.out + self.err


@dataclass
class Bench:
    """A config on one backend kind, the emulator it points at, and every CLI transcript."""

    kind: str
    world: World
    state_toml: str
    env: dict[str, str]
    backend_args: dict[str, Any]
    transcript: list[str] = field(default_factory=list, repr=False)
    pg: Any = None  # the PgServer, for postgres
    moto: Any = None  # the MotoS3, for s3
    # What was persisted at earlier moments (a lock's info exists only while it is held).
    seen: dict[str, bytes] = field(default_factory=dict, repr=False)

    def write_config(self, *names: str) -> None:
        """rlorinfra.toml with jobs ``names`` and this bench's [state] table."""
        self.world.write_config(jobs_toml(*names), extra=self.state_toml)

    def cli(self, *args: str, expect: int | None = 0, env: dict[str, str] | None = None) -> Run:
        """``python -m rlorinfra ARGS -f CONFIG`` as a subprocess; asserts the exit code unless ``expect`` is None."""
        proc = subprocess.run(
            [sys.executable, "-m", "rlorinfra", "--no-color", *args, "-f", str(self.world.config)],
            env={**self.env, **(env or {})},
            capture_output=True,
            text=True,
            timeout=120,
            cwd=self.world.folder,
        )
        run = Run(proc.returncode, proc.stdout, proc.stderr)
        self.transcript.append(f"$ {' '.join(args)}\n{run.text}")
        if expect is not None:
            assert run.code == expect, f"rlorinfra {' '.join(args)} exited {run.code}, not {expect}:\n{run.text}"
        return run

    def backend(self):
        """The backend class itself, built directly (not through the CLI) to read back what was stored."""
        if self.kind == "postgres":
            from rlorinfra.state.backends.postgres import PostgresBackend

            return PostgresBackend(self.pg.conninfo(), **self.backend_args)
        if self.kind == "s3":
            from rlorinfra.state.backends.s3 import S3Backend

            return S3Backend(**self.backend_args)
        from rlorinfra.state.backends.local import LocalBackend

        return LocalBackend(self.world.state_path)

    def stored(self):
        """(state, version) as the backend holds it now."""
        backend = self.backend()
        try:
            return backend.read()
        finally:
            backend.close()

    def spawn_holder(self) -> tuple[subprocess.Popen[str], dict[str, Any]]:
        """A process holding this config's state lock (see holder.py), and its lock info, once it holds it."""
        proc = subprocess.Popen(
            [sys.executable, str(HOLDER), str(self.world.config)],
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line, f"the lock holder exited early: {proc.communicate()}"
        return proc, json.loads(line)

    def remember_written(self) -> None:
        """Keep what is persisted right now for the final credential check."""
        self.seen.update({f"{where} (earlier)": data for where, data in self.written().items()})

    def written(self) -> dict[str, bytes]:
        """Everything persisted: files under the test's folder, the schema's rows, the bucket's objects."""
        found = {str(p): p.read_bytes() for p in self.world.folder.parent.rglob("*") if p.is_file()}
        if self.pg is not None:
            found.update(pg_rows(self.pg.conninfo()))
        if self.moto is not None:
            client = self.moto.client()
            for bucket in [b["Name"] for b in client.list_buckets()["Buckets"]]:
                for obj in client.list_objects_v2(Bucket=bucket).get("Contents", []):
                    body = client.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read()
                    found[f"s3://{bucket}/{obj['Key']}"] = body
        return found


def pg_rows(conninfo: str, schema: str = "rlorinfra") -> dict[str, bytes]:
    """Every row of every table in ``schema``, as JSON text, keyed by table and row number."""
    import psycopg

    rows: dict[str, bytes] = {}
    with psycopg.connect(conninfo) as conn:
        tables = conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = %s", (schema,)
        ).fetchall()
        assert tables, f"no table in schema {schema}"
        for (table,) in tables:
            query = f'SELECT row_to_json(t)::text FROM "{schema}"."{table}" t'  # names from the catalog
            for i, (row,) in enumerate(conn.execute(query).fetchall()):  # type: ignore[arg-type]
                rows[f"pg:{table}[{i}]"] = row.encode()
    return rows


def kill(proc: subprocess.Popen[str]) -> None:
    """SIGKILL a process (no cleanup runs in it) and reap it."""
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)


@pytest.fixture
def bench(request, tmp_path) -> Iterator[Bench]:
    """A served emulator and a config whose [state] is on the backend kind ``request.param``."""
    kind = request.param
    world = serve_world(tmp_path, provision_seconds=0.05)
    env = subprocess_env()
    env.pop(PG_ENV, None)
    backend_args: dict[str, Any] = {}
    pg = moto = None
    if kind == "postgres":
        pg = request.getfixturevalue("pg_server")
        name = f"e2e_{uuid.uuid4().hex[:12]}"
        state_toml = f'[state]\nbackend = "postgres"\nconn_str_env = "{PG_ENV}"\nname = "{name}"\n'
        env[PG_ENV] = pg.conninfo()
        backend_args = {"name": name}
    elif kind == "s3":
        bucket = request.getfixturevalue("s3_bucket")
        moto = request.getfixturevalue("moto_s3")
        state_toml = (
            f'[state]\nbackend = "s3"\nbucket = "{bucket}"\nkey = "{S3_KEY}"\n'
            f'region = "{REGION}"\nendpoint_url = "{moto.endpoint_url}"\n'
        )
        env = subprocess_env()  # now with the fixture's AWS credentials
        backend_args = {"bucket": bucket, "key": S3_KEY, "region": REGION, "endpoint_url": moto.endpoint_url}
    else:
        state_toml = '[state]\nbackend = "local"\n'
    b = Bench(kind, world, state_toml, env, backend_args, pg=pg, moto=moto)
    yield b
    world.server.stop()


def secrets_of(b: Bench) -> dict[str, str]:
    """The credentials of this bench that must never be printed or stored."""
    secrets = {"API key": API_KEY, "AWS secret key": FAKE_SECRET_KEY}
    if b.pg is not None:
        secrets["database password"] = PASSWORD
        secrets["connection string"] = b.pg.conninfo()
    return secrets


def assert_no_credential(b: Bench, extra: dict[str, str] | None = None) -> None:
    """No secret in anything the CLI printed, nor in anything written to files, tables or objects."""
    secrets = {**secrets_of(b), **(extra or {})}
    written = {**b.seen, **b.written()}
    assert b.transcript and written
    for what, secret in secrets.items():
        printed = [t.splitlines()[0] for t in b.transcript if secret in t]
        assert not printed, f"the {what} was printed by: {printed}"
        stored = [where for where, data in written.items() if secret.encode() in data]
        assert not stored, f"the {what} was written to: {stored}"
