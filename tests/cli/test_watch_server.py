"""``/metrics`` and ``/healthz`` of ``rlorinfra watch``, served for real on loopback.

``/metrics`` is parsed with prometheus_client's own parser (what a Prometheus server
accepts), and every value is checked against the ``WatchStatus`` it was rendered from.
"""

from __future__ import annotations

import http.client
import json
import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from rlorinfra.cli.watch_server import (
    METRICS_CONTENT_TYPE,
    MetricsAddressError,
    WatchServer,
    is_loopback,
    parse_metrics_addr,
    render_metrics,
    start_status_server,
)
from rlorinfra.operations.watch_status import WatchStatus


def get(address: tuple[str, int], path: str, method: str = "GET") -> tuple[int, dict[str, str], bytes]:
    """One request: (status, headers, body)."""
    conn = http.client.HTTPConnection(*address, timeout=10)
    try:
        conn.request(method, path)
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


@pytest.fixture
def status() -> WatchStatus:
    return WatchStatus()


@pytest.fixture
def served(status: WatchStatus) -> Iterator[tuple[str, int]]:
    server = WatchServer(status, "127.0.0.1", 0)
    address = server.start()
    try:
        yield address
    finally:
        server.stop()


def families(text: str) -> dict[str, Any]:
    """Family name -> family, as prometheus_client parses it (counters lose ``_total``)."""
    return {family.name: family for family in text_string_to_metric_families(text)}


def values(family: Any) -> dict[tuple[tuple[str, str], ...], float]:
    return {tuple(sorted(sample.labels.items())): sample.value for sample in family.samples}


BUSY = WatchStatus(
    cycles=42,
    skipped_cycles=3,
    actions={"resume": 2, "wait": 7, "create": 1},
    drift_count=4,
    quarantined=("job.flappy", 'job.we"ird\\name'),
    last_refresh_ok=1_765_000_000.25,
    last_error="",
)


def test_metrics_parse_and_match_the_status(status: WatchStatus, served: tuple[str, int]) -> None:
    with status.lock:
        for name in ("cycles", "skipped_cycles", "actions", "drift_count", "quarantined", "last_refresh_ok"):
            setattr(status, name, getattr(BUSY, name))
    code, headers, body = get(served, "/metrics")
    assert code == 200
    assert headers["Content-Type"] == METRICS_CONTENT_TYPE
    found = families(body.decode())
    prefix = "rlorinfra_watch"
    assert {name: f.type for name, f in found.items()} == {
        f"{prefix}_cycles": "counter",
        f"{prefix}_skipped_cycles": "counter",
        f"{prefix}_actions": "counter",
        f"{prefix}_drift": "gauge",
        f"{prefix}_quarantined": "gauge",
        f"{prefix}_quarantined_resource_info": "gauge",
        f"{prefix}_last_successful_refresh_timestamp_seconds": "gauge",
        f"{prefix}_degraded": "gauge",
    }
    assert values(found[f"{prefix}_cycles"]) == {(): 42}
    assert values(found[f"{prefix}_skipped_cycles"]) == {(): 3}
    assert values(found[f"{prefix}_actions"]) == {(("action", "resume"),): 2, (("action", "wait"),): 7,
                                                  (("action", "create"),): 1}  # fmt: skip
    assert [s.name for s in found[f"{prefix}_actions"].samples] == [f"{prefix}_actions_total"] * 3
    assert values(found[f"{prefix}_drift"]) == {(): 4}
    assert values(found[f"{prefix}_quarantined"]) == {(): 2}
    assert values(found[f"{prefix}_quarantined_resource_info"]) == {
        (("address", "job.flappy"),): 1,
        (("address", 'job.we"ird\\name'),): 1,  # escaped on the wire, the same string once parsed
    }
    assert values(found[f"{prefix}_last_successful_refresh_timestamp_seconds"]) == {(): 1_765_000_000.25}
    assert values(found[f"{prefix}_degraded"]) == {(): 1}


def test_a_fresh_watcher_exposes_zeros_and_no_labelled_series() -> None:
    found = families(render_metrics(WatchStatus()))
    assert values(found["rlorinfra_watch_cycles"]) == {(): 0}
    assert values(found["rlorinfra_watch_actions"]) == {}
    assert values(found["rlorinfra_watch_quarantined_resource_info"]) == {}
    # 0, not absent: `time() - x > 300` alerts on a watcher that never refreshed.
    assert values(found["rlorinfra_watch_last_successful_refresh_timestamp_seconds"]) == {(): 0}
    assert values(found["rlorinfra_watch_degraded"]) == {(): 0}


def test_healthz_turns_503_when_something_is_quarantined(status: WatchStatus, served: tuple[str, int]) -> None:
    code, headers, body = get(served, "/healthz")
    assert (code, headers["Content-Type"], json.loads(body)["status"], json.loads(body)["reasons"]) == (
        200,
        "application/json",
        "ok",
        [],
    )
    with status.lock:
        status.quarantined = ("job.flappy",)
    code, _, body = get(served, "/healthz")
    document = json.loads(body)
    assert (code, document["status"], document["reasons"]) == (503, "degraded", ["quarantined: job.flappy"])
    assert document["quarantined"] == ["job.flappy"]
    with status.lock:  # a human ran `state unquarantine`
        status.quarantined = ()
    assert get(served, "/healthz")[0] == 200


def test_healthz_turns_503_while_the_last_refresh_failed(status: WatchStatus, served: tuple[str, int]) -> None:
    with status.lock:
        status.last_refresh_ok = 1_765_000_000.0
        status.last_error = "control plane unreachable: 503 Service Unavailable"
    code, _, body = get(served, "/healthz")
    document = json.loads(body)
    assert code == 503
    assert document["reasons"] == ["last refresh failed: control plane unreachable: 503 Service Unavailable"]
    assert document["last_successful_refresh"] == 1_765_000_000.0
    with status.lock:
        status.last_error = ""
    assert get(served, "/healthz")[0] == 200


@pytest.mark.parametrize("path", ["/", "/metrics/", "/health", "/healthz/x", "/favicon.ico"])
def test_anything_else_is_404(served: tuple[str, int], path: str) -> None:
    assert get(served, path)[0] == 404


def test_head_answers_without_a_body_and_queries_are_ignored(served: tuple[str, int]) -> None:
    code, headers, body = get(served, "/healthz", method="HEAD")
    assert (code, body) == (200, b"")
    assert int(headers["Content-Length"]) > 0
    assert get(served, "/metrics?name[]=rlorinfra_watch_cycles_total")[0] == 200


def test_stop_releases_the_port_and_is_idempotent(status: WatchStatus) -> None:
    server = WatchServer(status, "127.0.0.1", 0)
    host, port = server.start()
    server.stop()
    server.stop()
    with socket.socket() as sock:
        assert sock.connect_ex((host, port)) != 0  # nobody listens any more


def test_a_busy_port_is_a_typed_error(status: WatchStatus, served: tuple[str, int]) -> None:
    with pytest.raises(MetricsAddressError, match="cannot serve metrics"):
        WatchServer(status, "127.0.0.1", served[1]).start()


def test_ipv6_loopback_is_served(status: WatchStatus) -> None:
    if not socket.has_ipv6:
        pytest.fail("this machine has no IPv6 support; the test needs ::1")
    with WatchServer(status, "::1", 0) as server:
        assert server._server is not None
        host, port = server._server.server_address[:2]
        assert get((host, port), "/healthz")[0] == 200


@pytest.mark.parametrize("host", ["0.0.0.0", "", "::", "10.1.2.3", "watch.internal", "192.168.0.7"])
def test_a_non_loopback_host_is_refused_unless_allowed(status: WatchStatus, host: str) -> None:
    with pytest.raises(MetricsAddressError, match="--metrics-allow-remote"):
        WatchServer(status, host, 0)
    WatchServer(status, host, 0, allow_remote=True)  # constructing binds nothing yet


@pytest.mark.parametrize("host", ["127.0.0.1", "127.8.9.10", "::1", "localhost", "LOCALHOST"])
def test_loopback_hosts_are_accepted(host: str) -> None:
    assert is_loopback(host)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("127.0.0.1:9464", ("127.0.0.1", 9464)),
        ("[::1]:9464", ("::1", 9464)),
        (":0", ("127.0.0.1", 0)),
        ("0.0.0.0:80", ("0.0.0.0", 80)),
        ("localhost:9100", ("localhost", 9100)),
    ],
)
def test_metrics_addr_parses(value: str, expected: tuple[str, int]) -> None:
    assert parse_metrics_addr(value) == expected


@pytest.mark.parametrize("value", ["127.0.0.1", "127.0.0.1:", "127.0.0.1:http", "host:65536", "9464"])
def test_a_malformed_metrics_addr_is_a_typed_error(value: str) -> None:
    with pytest.raises(MetricsAddressError, match="invalid --metrics-addr"):
        parse_metrics_addr(value)


def test_start_status_server_serves_metrics_addr_until_stopped(status: WatchStatus) -> None:
    probe = WatchServer(status, "127.0.0.1", 0)
    _, port = probe.start()  # a port that was just free
    probe.stop()
    stop = start_status_server(f"127.0.0.1:{port}", status)
    try:
        assert get(("127.0.0.1", port), "/healthz")[0] == 200
    finally:
        stop()
    with pytest.raises(MetricsAddressError, match="not a loopback address"):
        start_status_server("0.0.0.0:0", status)
    stop = start_status_server("0.0.0.0:0", status, allow_remote=True)
    stop()


def test_a_scrape_never_sees_a_half_counted_cycle(status: WatchStatus, served: tuple[str, int]) -> None:
    # The loop counts a cycle and its resume together under the lock; every scrape must see both or neither.
    done = threading.Event()

    def loop() -> None:
        while not done.is_set():
            with status.lock:
                status.cycles += 1
                status.actions["resume"] = status.actions.get("resume", 0) + 1

    writer = threading.Thread(target=loop)
    writer.start()
    try:
        seen = []
        for _ in range(30):
            found = families(get(served, "/metrics")[2].decode())
            cycles = values(found["rlorinfra_watch_cycles"])[()]
            resumes = values(found["rlorinfra_watch_actions"]).get((("action", "resume"),), 0)
            seen.append((cycles, resumes))
    finally:
        done.set()
        writer.join()
    assert all(cycles == resumes for cycles, resumes in seen), seen
    assert seen[-1][0] > 0
