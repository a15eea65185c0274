"""``/metrics`` (Prometheus text) and ``/healthz`` for a running ``rlorinfra watch``.

The server only reads the :class:`~rlorinfra.operations.watch_status.WatchStatus` the
loop updates: every request renders one :meth:`~WatchStatus.snapshot`, so a scrape
never sees a half-counted cycle and never blocks the loop for longer than a copy.
It runs in a daemon thread (``ThreadingHTTPServer``), so a hung scraper cannot stop
``watch`` from exiting. It binds loopback unless the caller explicitly allows another
address (``--metrics-allow-remote``): the endpoints are unauthenticated and name the
addresses of quarantined resources.

It lives in ``cli/`` because it is the process's I/O, like the views; the rendering
functions are pure so tests and the benchmark can call them directly.
"""

from __future__ import annotations

import ipaddress
import json
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from rlorinfra.errors import RlorinfraError
from rlorinfra.operations.watch_status import Health, WatchStatus

PREFIX = "rlorinfra_watch"
METRICS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
JSON_CONTENT_TYPE = "application/json"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 9464  # DESIGN.md §8's example address
_LOOPBACK_NAMES = frozenset({"localhost", "ip6-localhost"})


class MetricsAddressError(RlorinfraError):
    """``--metrics-addr`` is malformed, not loopback without permission, or cannot be bound."""


class MetricType(StrEnum):
    """The Prometheus types this server exposes."""

    COUNTER = "counter"
    GAUGE = "gauge"


@dataclass(frozen=True)
class Sample:
    """One line of a metric family: labels (in order) and a value."""

    labels: tuple[tuple[str, str], ...]
    value: float


@dataclass(frozen=True)
class Family:
    """A metric family: name, help, type and its samples."""

    name: str
    help: str
    type: MetricType
    samples: tuple[Sample, ...]


# -- rendering (pure) ---------------------------------------------------------------------------


def metric_families(status: WatchStatus) -> list[Family]:
    """The metric families for one snapshot of ``status``."""

    def one(value: float) -> tuple[Sample, ...]:
        return (Sample((), value),)

    return [
        Family(f"{PREFIX}_cycles_total", "Watch cycles completed.", MetricType.COUNTER, one(status.cycles)),
        Family(
            f"{PREFIX}_skipped_cycles_total",
            "Watch cycles skipped because the state lock was busy.",
            MetricType.COUNTER,
            one(status.skipped_cycles),
        ),
        Family(
            f"{PREFIX}_actions_total",
            "Actions taken by the watch, by kind (resume, wait, create, ...).",
            MetricType.COUNTER,
            tuple(Sample((("action", kind),), count) for kind, count in sorted(status.actions.items())),
        ),
        Family(
            f"{PREFIX}_drift", "Drift entries in the last completed cycle.", MetricType.GAUGE, one(status.drift_count)
        ),
        Family(
            f"{PREFIX}_quarantined",
            "Resources quarantined after exhausting their resume budget.",
            MetricType.GAUGE,
            one(len(status.quarantined)),
        ),
        Family(
            f"{PREFIX}_quarantined_resource_info",
            "One series per quarantined resource (value 1), labelled with its address.",
            MetricType.GAUGE,
            tuple(Sample((("address", address),), 1) for address in sorted(status.quarantined)),
        ),
        Family(
            f"{PREFIX}_last_successful_refresh_timestamp_seconds",
            "Unix time of the last successful refresh; 0 until the first one.",
            MetricType.GAUGE,
            # 0 rather than no sample: `time() - x > 300` then alerts on a watcher that never refreshed.
            one(status.last_refresh_ok or 0.0),
        ),
        Family(
            f"{PREFIX}_degraded",
            "1 while /healthz answers 503 (something quarantined or the last refresh failed), else 0.",
            MetricType.GAUGE,
            one(1 if status.health() is Health.DEGRADED else 0),
        ),
    ]


def render_metrics(status: WatchStatus) -> str:
    """The Prometheus text exposition (format 0.0.4) of one snapshot of ``status``."""
    return "".join(_family_lines(family) for family in metric_families(status))


def _family_lines(family: Family) -> str:
    lines = [f"# HELP {family.name} {_escape_help(family.help)}", f"# TYPE {family.name} {family.type}"]
    lines += [f"{family.name}{_labels(sample.labels)} {_number(sample.value)}" for sample in family.samples]
    return "\n".join(lines) + "\n"


def _labels(labels: tuple[tuple[str, str], ...]) -> str:
    if not labels:
        return ""
    return "{" + ",".join(f'{key}="{_escape_label(value)}"' for key, value in labels) + "}"


def _escape_label(value: str) -> str:
    # The exposition format escapes exactly these three in label values.
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _number(value: float) -> str:
    # Integers print without ".0" (counters read naturally); timestamps keep their fraction.
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def health_reasons(status: WatchStatus) -> list[str]:
    """Why ``status`` is degraded, one sentence each; empty when it is healthy."""
    reasons = [f"quarantined: {address}" for address in sorted(status.quarantined)]
    if status.last_error:
        reasons.append(f"last refresh failed: {status.last_error}")
    return reasons


def health_document(status: WatchStatus) -> dict[str, Any]:
    """The JSON body of ``/healthz``: the status, the reasons and the facts behind them."""
    return {
        "status": str(status.health()),
        "reasons": health_reasons(status),
        "quarantined": sorted(status.quarantined),
        "last_error": status.last_error,
        "last_successful_refresh": status.last_refresh_ok,
        "cycles": status.cycles,
    }


# -- addresses ----------------------------------------------------------------------------------


def parse_metrics_addr(value: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[v6]:PORT`` for IPv6; ``:PORT`` means loopback) → (host, port)."""
    host, sep, port_text = value.rpartition(":")
    if not sep or not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise MetricsAddressError(
            f"invalid --metrics-addr {value!r}", "Give HOST:PORT, for example 127.0.0.1:9464 or [::1]:9464."
        )
    host = host.removeprefix("[").removesuffix("]") if host.startswith("[") else host
    return host or DEFAULT_HOST, int(port_text)


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback IP literals (127.0.0.0/8, ::1); other names are not trusted."""
    if host.lower() in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_bind_host(host: str, *, allow_remote: bool) -> None:
    """Refuse a non-loopback ``host`` unless ``allow_remote``: the endpoints have no authentication."""
    if allow_remote or is_loopback(host):
        return
    raise MetricsAddressError(
        f"--metrics-addr {host!r} is not a loopback address",
        "/metrics and /healthz have no authentication and name resources, so they are served on "
        "loopback only. To serve them on another interface (a Kubernetes probe, a Prometheus on "
        "another host), add --metrics-allow-remote.",
    )


# -- the server -----------------------------------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    """GET/HEAD of ``/metrics`` and ``/healthz``; 404 for anything else."""

    server: _StatusServer
    protocol_version = "HTTP/1.1"  # keep-alive for Prometheus' repeated scrapes

    def do_GET(self) -> None:  # noqa: N802 (the name http.server dispatches to)
        self._respond(send_body=True)

    def do_HEAD(self) -> None:  # noqa: N802
        self._respond(send_body=False)

    def _respond(self, *, send_body: bool) -> None:
        code, content_type, body = self._route(self.path.split("?", 1)[0])
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        if send_body:
            self.wfile.write(body)

    def _route(self, path: str) -> tuple[int, str, bytes]:
        status = self.server.status.snapshot()
        if path == "/metrics":
            return HTTPStatus.OK, METRICS_CONTENT_TYPE, render_metrics(status).encode()
        if path == "/healthz":
            code = HTTPStatus.OK if status.health() is Health.OK else HTTPStatus.SERVICE_UNAVAILABLE
            return code, JSON_CONTENT_TYPE, (json.dumps(health_document(status)) + "\n").encode()
        return HTTPStatus.NOT_FOUND, "text/plain; charset=utf-8", b"not found: try /metrics or /healthz\n"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the base class's name)
        """Silent: a scrape every 15 s would otherwise flood watch's output (and stderr is the CLI's)."""


class _StatusServer(ThreadingHTTPServer):
    """A threading HTTP server that carries the status its handlers read."""

    daemon_threads = True  # a slow scraper never keeps the process alive

    def __init__(self, address: tuple[str, int], status: WatchStatus) -> None:
        self.status = status
        # IPv6 literals need an AF_INET6 socket; the class attribute is per instance here.
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, _Handler)


class WatchServer:
    """Serves ``/metrics`` and ``/healthz`` for ``status`` on ``host:port`` in a daemon thread.

    ``port`` 0 picks a free port; :meth:`start` returns the address actually bound.
    """

    def __init__(self, status: WatchStatus, host: str, port: int, *, allow_remote: bool = False) -> None:
        check_bind_host(host, allow_remote=allow_remote)
        self.status = status
        self.host = host
        self.port = port
        self._server: _StatusServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> tuple[str, int]:
        """Bind and serve in a daemon thread; the (host, port) bound. Refuses a busy port with a typed error."""
        try:
            self._server = _StatusServer((self.host, self.port), self.status)
        except OSError as error:
            raise MetricsAddressError(
                f"cannot serve metrics on {self.host}:{self.port}: {error.strerror or error}",
                "Choose another --metrics-addr (port 0 picks a free one).",
            ) from error
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            # shutdown() waits at most one poll; two idle wake-ups a second cost microseconds.
            kwargs={"poll_interval": 0.5},
            name="rlorinfra-watch-metrics",
            daemon=True,
        )
        self._thread.start()
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    def stop(self) -> None:
        """Stop serving and close the socket; safe to call twice or before :meth:`start`."""
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        if thread is not None:
            thread.join()

    def __enter__(self) -> WatchServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_status_server(addr: str, status: WatchStatus, *, allow_remote: bool = False) -> Callable[[], None]:
    """Serve ``/metrics`` and ``/healthz`` for ``status`` on ``--metrics-addr`` ``addr``; returns its stop function.

    Raises :class:`MetricsAddressError` for a malformed address, a non-loopback host
    without ``allow_remote`` (``--metrics-allow-remote``), or a port that cannot be bound.
    """
    host, port = parse_metrics_addr(addr)
    server = WatchServer(status, host, port, allow_remote=allow_remote)
    server.start()
    return server.stop
