"""``StateWriter``: the one path by which apply's worker threads change state."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace

from rlorinfra.model.address import Address
from rlorinfra.state.model import DeploymentRecord, JobRecord, Record, State


class StateWriter:
    """Serializes state updates from worker threads; each update is on disk when it returns.

    ``persist`` is the state store's ``write`` (the one writer of state bytes);
    the caller holds the state lock for the whole run. A write costs O(jobs),
    so writes are grouped: an update made while another thread is writing
    waits for that write to end and then one write covers every update made
    meanwhile (group commit: still durable before ``update`` returns). Inside
    ``deferred()`` a thread's updates (observations, not remote changes) are
    kept in memory and written once when the block ends.
    """

    def __init__(self, state: State, persist: Callable[[State], State]) -> None:
        self._state = state
        self._persist = persist
        self._lock = threading.Lock()  # guards _state and the version counters
        self._write_lock = threading.Lock()  # one write at a time
        self._version = 0  # bumped by every update
        self._written = 0  # the version last written
        self._local = threading.local()

    @property
    def state(self) -> State:
        """The latest state written."""
        return self._state

    def set_record(self, address: Address, record: Record) -> None:
        """Record ``address`` and write."""
        self.update(lambda s: s.with_record(address, record))

    def forget(self, address: Address) -> None:
        """Drop ``address`` and write."""
        self.update(lambda s: s.without_record(address))

    def update(self, change: Callable[[State], State]) -> None:
        """Apply ``change`` to the current state and write the result (unless deferred)."""
        with self._lock:
            self._state = change(self._state)
            self._version += 1
            version = self._version
        if not getattr(self._local, "deferred", False):
            self._write_through(version)

    def note(self, change: Callable[[State], State]) -> None:
        """Apply ``change`` in memory only; the next write (anyone's) or ``flush`` persists it."""
        with self._lock:
            self._state = change(self._state)
            self._version += 1

    @contextmanager
    def deferred(self) -> Iterator[None]:
        """This thread's updates inside the block are written once, when it ends."""
        self._local.deferred = True
        try:
            yield
        finally:
            self._local.deferred = False
            self.flush()

    def flush(self) -> None:
        """Write every update made so far (no-op when all are written)."""
        with self._lock:
            version = self._version
        self._write_through(version)

    def _write_through(self, version: int) -> None:
        with self._write_lock:
            if self._written >= version:
                return  # a write that started after our update already covered it
            with self._lock:
                snapshot, latest = self._state, self._version
            written = self._persist(snapshot)
            with self._lock:
                # Later updates were applied on top of the old serial; keep the disk's.
                self._state = replace(self._state, serial=written.serial, lineage=written.lineage)
                self._written = latest

    def record(self, address: Address) -> Record | None:
        """The current record at ``address``."""
        return self._state.record(address)

    def job(self, name: str) -> JobRecord | None:
        """The current record of job ``name``."""
        return self._state.job(name)

    def deployment(self, name: str) -> DeploymentRecord | None:
        """The current record of deployment ``name``."""
        return self._state.deployment(name)
