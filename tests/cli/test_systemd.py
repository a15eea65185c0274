"""The systemd notify protocol, checked with a fake ``NOTIFY_SOCKET``: a real AF_UNIX datagram socket."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from rlorinfra.cli.systemd import Notification, SystemdNotifier, socket_address


def receive_all(sock: socket.socket) -> list[str]:
    """Every datagram already queued on ``sock`` (sends are synchronous on AF_UNIX, so they are all there)."""
    received = []
    sock.setblocking(False)
    while True:
        try:
            received.append(sock.recv(4096).decode())
        except BlockingIOError:
            return received


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    """systemd's side: a bound datagram socket in tmp_path and its path as NOTIFY_SOCKET would hold it."""
    path = tmp_path / "notify"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        yield sock, str(path)


def test_ready_after_the_first_cycle_then_a_watchdog_ping_per_cycle(notify_socket: tuple[socket.socket, str]) -> None:
    sock, path = notify_socket
    notifier = SystemdNotifier.from_environment({"NOTIFY_SOCKET": path})
    assert notifier.enabled
    assert receive_all(sock) == []  # nothing before a cycle has finished
    notifier.cycle_finished()
    assert receive_all(sock) == ["READY=1", "WATCHDOG=1"]
    notifier.cycle_finished()
    notifier.cycle_finished()
    assert receive_all(sock) == ["WATCHDOG=1", "WATCHDOG=1"]
    notifier.stopping()
    assert receive_all(sock) == ["STOPPING=1"]


def test_an_abstract_namespace_socket_is_reached() -> None:
    name = f"rlorinfra-test-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        notifier = SystemdNotifier.from_environment({"NOTIFY_SOCKET": f"@{name}"})
        notifier.cycle_finished()
        assert receive_all(sock) == ["READY=1", "WATCHDOG=1"]


def test_socket_address_maps_at_to_a_leading_nul() -> None:
    assert socket_address("@abc") == "\0abc"
    assert socket_address("/run/systemd/notify") == "/run/systemd/notify"


def test_without_notify_socket_everything_is_a_no_op() -> None:
    notifier = SystemdNotifier.from_environment({})
    assert not notifier.enabled
    notifier.cycle_finished()
    notifier.stopping()
    assert notifier.notify(Notification.READY) is False
    assert notifier.failures == 0


def test_a_vanished_socket_is_counted_not_raised_and_ready_is_retried(tmp_path: Path) -> None:
    path = tmp_path / "notify"
    notifier = SystemdNotifier(str(path))
    notifier.cycle_finished()  # nobody listens yet: the watcher keeps going
    assert notifier.failures == 2
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        notifier.cycle_finished()
        assert receive_all(sock) == ["READY=1", "WATCHDOG=1"]  # READY was never delivered, so it is sent now


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({"WATCHDOG_USEC": "180000000"}, 180.0),
        ({"WATCHDOG_USEC": "180000000", "WATCHDOG_PID": str(os.getpid())}, 180.0),
        ({"WATCHDOG_USEC": "180000000", "WATCHDOG_PID": "1"}, None),  # meant for another process
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "soon"}, None),
        ({}, None),
    ],
)
def test_the_watchdog_timeout_is_read_for_this_process_only(environ: dict[str, str], expected: float | None) -> None:
    assert SystemdNotifier.from_environment(environ).watchdog_seconds == expected


def test_a_listener_that_stopped_reading_never_blocks_the_loop(notify_socket: tuple[socket.socket, str]) -> None:
    # Its queue fills up; a blocking sendto would then hang the watch (and its SIGTERM) forever.
    _sock, path = notify_socket
    notifier = SystemdNotifier.from_environment({"NOTIFY_SOCKET": path})
    for _ in range(5000):  # far more than an AF_UNIX datagram queue holds
        notifier.cycle_finished()
    assert notifier.failures > 0
