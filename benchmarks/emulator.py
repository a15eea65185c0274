"""The control-plane emulator served in its own process, with request counters.

This is ``rlorinfra control-plane serve`` plus a counting WSGI middleware, so a
benchmark can ask the *server* how many requests (and TCP connections) a client
used. Run it as a process; it prints one line ``URL http://127.0.0.1:PORT``
when it is ready and serves until its stdin closes or it gets SIGTERM, so it
stops by itself when the benchmark that started it ends.

Admin routes (not counted, no key needed):

* ``GET /_bench/counts`` -> ``{"requests": n, "health_checks": n, "connections": n, "by_kind": {...}}``
* ``POST /_bench/reset`` -> zeroes the counters

``requests`` counts control-plane requests only, as the client's
``request_count`` and the request budgets do; ``health_checks`` counts the
trainer gateway's health route (``/training/...``, the same server here but
another service in production), as ``health_check_count`` does.
"""

from __future__ import annotations

import argparse
import json
import re
import signal
import sys
import threading
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

GATEWAY_PREFIX = "/training/"  # the trainer gateway's routes: health checks, not control-plane requests

_KINDS = (
    ("job-action", re.compile(r"/rlorTrainerJobs/[^/]+:(resume|cancel)$")),
    ("job", re.compile(r"/rlorTrainerJobs/[^/]+$")),
    ("jobs", re.compile(r"/rlorTrainerJobs$")),
    ("shapes", re.compile(r"/trainingShapes")),
    ("accounts", re.compile(r"^/v1/accounts")),
)


def request_kind(method: str, path: str) -> str:
    """A short label such as ``GET jobs`` (a LIST) or ``GET job`` (one job).

    Anything under the gateway prefix is ``healthz`` or ``gateway``, never a control-plane kind.
    """
    if path.startswith(GATEWAY_PREFIX):
        return f"{method} healthz" if path.endswith("/healthz") else f"{method} gateway"
    for kind, pattern in _KINDS:
        if pattern.search(path):
            return f"{method} {kind}"
    return f"{method} other"


class CountingApp:
    """WSGI middleware: counts every request by kind; serves ``/_bench/*``."""

    def __init__(self, app: Callable) -> None:
        self.app = app
        self.lock = threading.Lock()
        self.by_kind: Counter[str] = Counter()
        self.connections = 0

    def __call__(self, environ: dict[str, Any], start_response: Callable) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path.startswith("/_bench/"):
            return self._admin(environ["REQUEST_METHOD"], path, start_response)
        with self.lock:
            self.by_kind[request_kind(environ["REQUEST_METHOD"], path)] += 1
        return self.app(environ, start_response)

    def counts(self) -> dict[str, Any]:
        """The counters as a JSON-ready dict."""
        with self.lock:
            health = sum(n for kind, n in self.by_kind.items() if kind.endswith((" healthz", " gateway")))
            return {
                "requests": sum(self.by_kind.values()) - health,
                "health_checks": health,
                "connections": self.connections,
                "by_kind": dict(sorted(self.by_kind.items())),
            }

    def _admin(self, method: str, path: str, start_response: Callable) -> Iterable[bytes]:
        if method == "POST" and path == "/_bench/reset":
            with self.lock:
                self.by_kind.clear()
                self.connections = 0
        body = json.dumps(self.counts()).encode()
        start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
        return [body]


def make_counting_server(
    db: Path, *, port: int, api_key: str, latency_ms: float, provision_seconds: float, capacity: int
):
    """An ``EmulatorServer`` whose app and accepted connections are counted."""
    from rlorinfra.controlplane.app import make_app
    from rlorinfra.controlplane.server import EmulatorServer
    from rlorinfra.controlplane.store import Store

    store = Store(db, provision_seconds=provision_seconds, capacity=capacity)
    counting = CountingApp(make_app(store, api_key=api_key, latency_ms=latency_ms))

    class CountingServer(EmulatorServer):
        def process_request(self, request: Any, client_address: Any) -> None:
            with counting.lock:
                counting.connections += 1
            super().process_request(request, client_address)

    return CountingServer(("127.0.0.1", port), counting)


def _stop_when_stdin_closes(server: Any) -> None:
    """The parent holds our stdin open; when it exits (or closes it) we stop."""
    sys.stdin.read()
    threading.Thread(target=server.shutdown, daemon=True).start()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", type=Path, required=True)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--api-key", default="bench-key")
    parser.add_argument("--latency-ms", type=float, default=20.0)
    parser.add_argument("--provision-seconds", type=float, default=3.0)
    parser.add_argument("--capacity", type=int, default=1_000_000)
    args = parser.parse_args(argv)
    server = make_counting_server(
        args.db,
        port=args.port,
        api_key=args.api_key,
        latency_ms=args.latency_ms,
        provision_seconds=args.provision_seconds,
        capacity=args.capacity,
    )
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown, daemon=True).start())
    threading.Thread(target=_stop_when_stdin_closes, args=(server,), daemon=True).start()
    print(f"URL {server.url}", flush=True)
    try:
        server.serve_forever(poll_interval=0.1)
    finally:
        server.close_connections()
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
