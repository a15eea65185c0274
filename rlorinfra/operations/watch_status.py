"""What a running ``watch`` knows about itself, shared by its loop and its metrics server.

The loop (``operations/watching.py``) updates one :class:`WatchStatus` per process under
its ``lock``; the ``/metrics`` and ``/healthz`` server reads a :meth:`WatchStatus.snapshot`,
so a scrape never sees a cycle half-counted. Nothing here does I/O.
"""

from __future__ import annotations

import copy
import threading
from dataclasses import dataclass, field
from enum import StrEnum


class Health(StrEnum):
    """What ``/healthz`` answers: 200 ``ok`` or 503 ``degraded``."""

    OK = "ok"
    DEGRADED = "degraded"


@dataclass
class WatchStatus:
    """One instance per watch process; the loop updates it (holding ``lock``), the server reads it."""

    cycles: int = 0
    skipped_cycles: int = 0  # lock busy
    actions: dict[str, int] = field(default_factory=dict)  # by action kind: "resume", "wait", "create", ...
    drift_count: int = 0  # drift entries in the last completed cycle
    quarantined: tuple[str, ...] = ()  # addresses
    last_refresh_ok: float | None = None  # unix time of the last successful refresh
    last_error: str = ""  # why the last refresh failed; "" once a refresh succeeds again
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def health(self) -> Health:
        """DEGRADED when anything is quarantined or the last refresh failed (``last_error`` is set)."""
        if self.quarantined or self.last_error:
            return Health.DEGRADED
        return Health.OK

    def snapshot(self) -> WatchStatus:
        """A copy taken under the lock (with its own, fresh lock), safe to read without it."""
        with self.lock:
            return WatchStatus(
                cycles=self.cycles,
                skipped_cycles=self.skipped_cycles,
                actions=copy.copy(self.actions),
                drift_count=self.drift_count,
                quarantined=tuple(self.quarantined),
                last_refresh_ok=self.last_refresh_ok,
                last_error=self.last_error,
            )
