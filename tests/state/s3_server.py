"""A real S3 for the tests: moto in server mode on 127.0.0.1, and processes acting on it.

``moto_s3`` (session) starts ``python -m moto.server`` on a free loopback port
and stops it after the session; fake AWS credentials are set in this test
process's environment only (children inherit them). ``s3_bucket`` gives each
test a fresh bucket. ``s3_actor`` starts ``s3_actor.py`` as another rlorinfra
run on another "host": it holds the lock, crashes mid-write or writes late.
"""

from __future__ import annotations

import http.client
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.state.conftest import holder_factory

ACTOR = Path(__file__).with_name("s3_actor.py")
FAKE_ACCESS_KEY = "AKIAFAKEACCESSKEY0001"
FAKE_SECRET_KEY = "fake-secret-Zq8vW2pL5nR7tY9uX3kM6bJ1hG4dF0sA"
REGION = "us-east-1"
ENDPOINT_VARS = ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3")  # would redirect every client


def free_port() -> int:
    """A loopback port nobody listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_listening(port: int, proc: subprocess.Popen, timeout: float = 60) -> None:
    """Return once something accepts connections on ``port``; fail if ``proc`` dies or time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"the server exited with {proc.returncode}"
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"nothing listens on 127.0.0.1:{port} after {timeout} s")


def actor_env() -> dict[str, str]:
    """This process's environment, with the repository root importable (the actor imports ``tests``)."""
    root = str(Path(__file__).resolve().parents[2])
    paths = [root, *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}


@dataclass
class MotoS3:
    """The running moto server."""

    endpoint_url: str

    def client(self):
        import boto3

        return boto3.session.Session().client("s3", region_name=REGION, endpoint_url=self.endpoint_url)

    def new_bucket(self) -> str:
        name = f"state-{uuid.uuid4().hex[:12]}"
        self.client().create_bucket(Bucket=name)
        return name


@contextmanager
def running_moto(**env: str) -> Iterator[str]:
    """``python -m moto.server`` on a free loopback port (``env``: extra settings); yields its URL, stops it."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, **env},
    )
    try:
        wait_listening(port, proc)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="session")
def moto_s3(tmp_path_factory) -> Iterator[MotoS3]:
    """moto's S3 on 127.0.0.1, with fake credentials in this process's environment."""
    home = tmp_path_factory.mktemp("aws")
    with pytest.MonkeyPatch.context() as env:
        for name in (
            "AWS_PROFILE",
            "AWS_SESSION_TOKEN",
            "AWS_SECURITY_TOKEN",
            "AWS_ENDPOINT_URL",
            "AWS_ENDPOINT_URL_S3",
        ):
            env.delenv(name, raising=False)
        env.setenv("AWS_ACCESS_KEY_ID", FAKE_ACCESS_KEY)
        env.setenv("AWS_SECRET_ACCESS_KEY", FAKE_SECRET_KEY)
        env.setenv("AWS_DEFAULT_REGION", REGION)
        # Nothing of this machine's AWS setup may leak in, nor any instance metadata lookup.
        env.setenv("AWS_CONFIG_FILE", str(home / "config"))
        env.setenv("AWS_SHARED_CREDENTIALS_FILE", str(home / "credentials"))
        env.setenv("AWS_EC2_METADATA_DISABLED", "true")
        with running_moto() as endpoint_url:
            yield MotoS3(endpoint_url)


@pytest.fixture
def s3_bucket(moto_s3) -> str:
    """A fresh, empty bucket on the moto server."""
    return moto_s3.new_bucket()


@pytest.fixture
def s3_actor(moto_s3):
    """Factory: ``s3_actor(command, bucket, key, *args)`` -> a ``Holder`` once the actor printed its lock info."""

    def s3_actor_argv(command: str, bucket: str, key: str, *args: str) -> list[str]:
        return [sys.executable, str(ACTOR), command, moto_s3.endpoint_url, bucket, key, *args]

    yield from holder_factory(s3_actor_argv, env=actor_env())


class _StrippingHandler(BaseHTTPRequestHandler):
    """Forwards each request to the upstream store without its conditional headers."""

    protocol_version = "HTTP/1.1"
    upstream: tuple[str, int]
    stripped = frozenset({"if-none-match", "if-match"})

    def _forward(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        headers = {k: v for k, v in self.headers.items() if k.lower() not in self.stripped}
        conn = http.client.HTTPConnection(*self.upstream, timeout=30)
        try:
            conn.request(self.command, self.path, body=body, headers=headers)
            response = conn.getresponse()
            data = response.read()
        finally:
            conn.close()
        self.send_response(response.status)
        for name, value in response.getheaders():
            if name.lower() not in ("content-length", "transfer-encoding", "connection"):
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _forward

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002  (the base class's name)
        pass  # quiet: pytest shows stderr of failing tests only, and this is noise there


@contextmanager
def stripping_proxy(upstream_url: str) -> Iterator[str]:
    """A store that ignores If-None-Match/If-Match: a loopback proxy in front of ``upstream_url``.

    Yields the proxy's endpoint URL; stopped on exit.
    """
    parts = urlsplit(upstream_url)
    handler = type("Handler", (_StrippingHandler,), {"upstream": (parts.hostname, parts.port)})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)
