"""systemd's notify protocol (``sd_notify``) for ``rlorinfra watch`` under ``Type=notify``.

systemd passes ``NOTIFY_SOCKET`` (a filesystem path, or ``@name`` for the abstract
namespace) to a ``Type=notify`` service; the service sends datagrams such as
``READY=1`` and ``WATCHDOG=1`` to it. ``watch`` sends ``READY=1`` once its first cycle
has finished (so ``systemctl start`` returns when the watcher really works) and
``WATCHDOG=1`` after every cycle (so ``WatchdogSec=`` restarts a watcher whose loop
hangs, which a live process alone would not reveal). With no ``NOTIFY_SOCKET`` every
call is a no-op. This reads the environment, hence ``cli/``.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from enum import StrEnum


class Notification(StrEnum):
    """The messages ``watch`` sends."""

    READY = "READY=1"
    WATCHDOG = "WATCHDOG=1"
    STOPPING = "STOPPING=1"


def socket_address(notify_socket: str) -> str:
    """``NOTIFY_SOCKET`` as an ``AF_UNIX`` address: ``@name`` is the abstract namespace (a leading NUL)."""
    if notify_socket.startswith("@"):
        return "\0" + notify_socket[1:]
    return notify_socket


class SystemdNotifier:
    """Sends notifications to ``address`` (``NOTIFY_SOCKET``'s value); does nothing when it is None.

    ``watchdog_seconds`` is ``WATCHDOG_USEC`` in seconds when systemd set it for this
    process, so the CLI can warn when ``--interval`` is longer than the watchdog allows.
    """

    def __init__(self, address: str | None, *, watchdog_seconds: float | None = None) -> None:
        self.address = address or None
        self.watchdog_seconds = watchdog_seconds
        self._ready_sent = False
        self.failures = 0  # sends the socket refused (counted, never raised: see notify)

    @classmethod
    def from_environment(cls, environ: Mapping[str, str], pid: int | None = None) -> SystemdNotifier:
        """The notifier systemd asked for in ``environ`` (a no-op one when ``NOTIFY_SOCKET`` is unset)."""
        return cls(environ.get("NOTIFY_SOCKET"), watchdog_seconds=_watchdog_seconds(environ, pid or os.getpid()))

    @property
    def enabled(self) -> bool:
        """Whether there is a socket to notify."""
        return self.address is not None

    def cycle_finished(self) -> None:
        """After each watch cycle: ``READY=1`` the first time, then ``WATCHDOG=1`` every time."""
        if not self._ready_sent:
            self._ready_sent = self.notify(Notification.READY) or not self.enabled
        self.notify(Notification.WATCHDOG)

    def stopping(self) -> None:
        """Before a clean exit: tells systemd the stop is intended, not a crash."""
        self.notify(Notification.STOPPING)

    def notify(self, message: Notification) -> bool:
        """Send one datagram; True when sent. A refused send is counted, not raised.

        A watcher whose supervisor socket went away must keep healing trainers: the
        watchdog (if any) will notice the missing pings, which is the right outcome.
        """
        if self.address is None:
            return False
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                # Never block the loop: a listener that stopped reading (its queue full) costs a
                # dropped ping, not a watch stuck in sendto that SIGTERM can no longer stop.
                sock.setblocking(False)
                sock.sendto(str(message).encode(), socket_address(self.address))
        except OSError:
            self.failures += 1
            return False
        return True


def _watchdog_seconds(environ: Mapping[str, str], pid: int) -> float | None:
    """``WATCHDOG_USEC`` in seconds, if it is meant for ``pid`` (``WATCHDOG_PID`` unset or equal)."""
    usec, owner = environ.get("WATCHDOG_USEC", ""), environ.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) == 0 or (owner and owner != str(pid)):
        return None
    return int(usec) / 1_000_000
