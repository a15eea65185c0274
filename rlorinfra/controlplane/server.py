"""A threaded HTTP/1.1 server for the emulator's WSGI app.

``wsgiref.simple_server`` speaks one request per connection, so clients like
httpx could not reuse connections. This module is a small WSGI gateway on
``http.server`` instead: HTTP/1.1 keep-alive, every response carries
``Content-Length``, one daemon thread per connection, no access log. Any method
reaches the app (so an odd verb gets the app's 405, not the stdlib's 501). A
request body the app did not read is drained so the connection stays usable;
a chunked request body (not supported) gets 411 and the connection closes.
``stop()`` also shuts down idle keep-alive connections, so a stopped server
really stops answering.
"""

from __future__ import annotations

import io
import json
import socket
import sys
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote
from wsgiref.types import WSGIApplication

_DRAIN_LIMIT = 64 << 20  # read and discard up to this much unread body; beyond it, close
_IDLE_TIMEOUT_S = 120.0  # an idle keep-alive connection is closed after this long


class _BodyReader(io.RawIOBase):
    """``wsgi.input``: reads at most ``Content-Length`` bytes from the socket."""

    def __init__(self, stream: Any, length: int) -> None:
        super().__init__()
        self._stream = stream
        self.remaining = length

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        if size is None or size < 0 or size > self.remaining:
            size = self.remaining
        data = self._stream.read(size) if size else b""
        self.remaining -= len(data)
        if size and not data:
            self.remaining = 0  # client went away
        return data

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


class _Handler(BaseHTTPRequestHandler):
    """Turns each HTTP request into one WSGI call."""

    protocol_version = "HTTP/1.1"
    default_request_version = "HTTP/1.0"  # so even a garbled request line gets a status line
    server_version = "rlorinfra-emulator"
    sys_version = ""
    timeout = _IDLE_TIMEOUT_S
    # Headers and body go out in two writes; with Nagle on, the body waits for the
    # client's delayed ACK of the headers (~40 ms on Linux) on every keep-alive request.
    disable_nagle_algorithm = True
    server: EmulatorServer

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        """Quiet: no access log."""

    def handle_one_request(self) -> None:
        """Like the stdlib's, but every method goes to the WSGI app."""
        try:
            self.raw_requestline = self.rfile.readline(65537)
            if len(self.raw_requestline) > 65536:
                self.requestline, self.request_version, self.command = "", "", ""
                self.send_error(414)
                return
            if not self.raw_requestline:
                self.close_connection = True
                return
            if not self.parse_request():
                return
            self._call_app()
            self.wfile.flush()
        except (TimeoutError, ConnectionError, OSError):
            self.close_connection = True

    def _environ(self, body: _BodyReader) -> dict[str, Any]:
        path, _, query = self.path.partition("?")
        host, port = self.server.server_address[:2]
        environ: dict[str, Any] = {
            "wsgi.version": (1, 0),
            "wsgi.url_scheme": "http",
            "wsgi.input": body,
            "wsgi.errors": sys.stderr,
            "wsgi.multithread": True,
            "wsgi.multiprocess": False,
            "wsgi.run_once": False,
            "REQUEST_METHOD": self.command,
            "SCRIPT_NAME": "",
            "PATH_INFO": unquote(path, "iso-8859-1"),
            "QUERY_STRING": query,
            "SERVER_NAME": str(host),
            "SERVER_PORT": str(port),
            "SERVER_PROTOCOL": self.request_version,
            "REMOTE_ADDR": self.client_address[0],
        }
        for name, value in self.headers.items():
            key = name.upper().replace("-", "_")
            key = key if key in ("CONTENT_TYPE", "CONTENT_LENGTH") else f"HTTP_{key}"
            environ[key] = f"{environ[key]},{value}" if key in environ else value
        return environ

    def _content_length(self) -> int | None:
        raw = (self.headers.get("Content-Length") or "0").strip()
        return int(raw) if raw.isdigit() else None

    def _call_app(self) -> None:
        if self.headers.get("Transfer-Encoding"):
            self.close_connection = True
            self._respond(
                411,
                self._identity_headers(),
                _error_body(3, "INVALID_ARGUMENT", "send a Content-Length; chunked bodies are not supported"),
            )
            return
        length = self._content_length()
        body = _BodyReader(self.rfile, length or 0)
        captured: dict[str, Any] = {}

        def start_response(
            status: str, headers: list[tuple[str, str]], exc_info: object = None
        ) -> Callable[[bytes], object]:
            captured["status"], captured["headers"] = status, headers
            return lambda _data: None

        chunks = self.server.app(self._environ(body), start_response)
        try:
            payload = b"".join(chunks)
        finally:
            getattr(chunks, "close", lambda: None)()
        if length is None or body.remaining > _DRAIN_LIMIT:
            self.close_connection = True  # framing unknown or too much to drain
        elif body.remaining:
            while body.remaining and body.read(min(body.remaining, 1 << 16)):
                pass
        code = int(captured["status"].split(" ", 1)[0])
        self._respond(code, captured["headers"], payload)

    def _identity_headers(self) -> list[tuple[str, str]]:
        """The app's instance header, for the answers the server gives itself (the app adds it to its own)."""
        instance = getattr(getattr(self.server.app, "store", None), "instance_id", None)
        return [("X-Rlorinfra-Emulator-Instance", instance)] if isinstance(instance, str) else []

    def _respond(self, code: int, headers: list[tuple[str, str]], payload: bytes) -> None:
        self.send_response(code)
        names = {name.lower() for name, _ in headers}
        for name, value in headers:
            self.send_header(name, value)
        if "content-length" not in names:
            self.send_header("Content-Length", str(len(payload)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)


def _error_body(code: int, status: str, message: str) -> bytes:
    return json.dumps({"error": {"code": code, "message": message, "status": status}}).encode()


class EmulatorServer(ThreadingHTTPServer):
    """Threaded server for one WSGI app; remembers live connections to close on stop."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256

    def __init__(self, address: tuple[str, int], app: WSGIApplication) -> None:
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        self.app = app
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, _Handler)

    @property
    def url(self) -> str:
        """``http://host:port`` with the real (bound) port."""
        address, port = self.server_address[:2]
        host = address.decode() if isinstance(address, bytes) else str(address)
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{port}"

    def process_request_thread(self, request: socket.socket | tuple[bytes, socket.socket], client_address: Any) -> None:
        # A stream server: every request is a connected socket (the tuple is a datagram server's).
        assert isinstance(request, socket.socket)
        with self._connections_lock:
            self._connections.add(request)
        try:
            super().process_request_thread(request, client_address)
        finally:
            with self._connections_lock:
                self._connections.discard(request)

    def close_connections(self) -> None:
        """Shut down every open client connection (idle keep-alives included)."""
        with self._connections_lock:
            connections = list(self._connections)
        for conn in connections:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def make_server(app: WSGIApplication, host: str = "127.0.0.1", port: int = 0) -> EmulatorServer:
    """Bind a server for ``app`` (port 0 picks a free port; see ``.url``)."""
    return EmulatorServer((host, port), app)


class ServedEmulator:
    """A server running in a background thread; ``stop()`` or use as a context manager."""

    def __init__(self, server: EmulatorServer) -> None:
        self.server = server
        self.url = server.url
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"emulator-{server.server_address[1]}",
            daemon=True,
        )
        self._stopped = False
        self._thread.start()

    @property
    def port(self) -> int:
        """The bound port."""
        return int(self.server.server_address[1])

    def stop(self) -> None:
        """Stop accepting, close open connections, release the port (idempotent)."""
        if self._stopped:
            return
        self._stopped = True
        self.server.shutdown()
        self.server.close_connections()
        self.server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> ServedEmulator:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def serve_in_thread(app: WSGIApplication, host: str = "127.0.0.1", port: int = 0) -> ServedEmulator:
    """Serve ``app`` on ``host:port`` from a daemon thread; ``.url`` has the real port."""
    return ServedEmulator(make_server(app, host, port))
