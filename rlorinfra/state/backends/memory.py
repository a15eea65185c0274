"""The in-memory backend: one state held by this process, for tests and fakes.

It keeps the state as encoded bytes, exactly as a file or a row would, so
every read decodes a fresh value (no caller can change what is stored through
a shared object) and whatever cannot be written cannot be stored. It follows
the rules every backend follows: serial bumped and lineage set once on a
content change, unchanged content writes nothing, writes fenced by the version
read, a lock with holder info, a timeout and force-unlock. It is thread-safe:
threads stand in for the other processes of the real backends.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from rlorinfra.errors import StateError
from rlorinfra.state.backend import StateBackend, Version, next_state, serial_version, state_changed_error
from rlorinfra.state.codec import SUPPORTED_FORMAT_VERSION, decode_state, encode_state
from rlorinfra.state.lock import LockInfo, lock_held_error
from rlorinfra.state.model import State


class InMemoryBackend:
    """A ``StateBackend`` whose state and lock live in this object."""

    def __init__(self, name: str = "memory", *, clock: Callable[[], float] = time.monotonic) -> None:
        self.name = name
        self._clock = clock
        self._changed = threading.Condition()  # guards everything below; notified on unlock
        self._data: bytes | None = None
        self._holder: LockInfo | None = None

    def __repr__(self) -> str:
        return f"InMemoryBackend({self.name!r})"

    def describe(self) -> str:
        """``in-memory state NAME``."""
        return f"in-memory state {self.name}"

    def read(self) -> tuple[State, Version]:
        """The stored state (``State()`` when none) and its serial as the version."""
        with self._changed:
            stored = self._stored()
        return (State() if stored is None else stored), serial_version(stored)

    def write(self, state: State, expected_version: Version) -> tuple[State, Version]:
        """Store ``state`` unless the version moved since ``expected_version`` (``StateChangedError``)."""
        with self._changed:
            stored = self._stored()
            if serial_version(stored) != expected_version:
                raise state_changed_error(self.describe(), expected_version, serial_version(stored))
            current = State() if stored is None else stored
            new = next_state(state, current)
            if new is None:
                return current, expected_version
            # Encoded before anything is replaced: a failure here leaves the old state stored.
            self._data = encode_state(new)
            return new, serial_version(new)

    def write_verbatim(self, state: State, expected_version: Version) -> Version:
        """Store ``state`` with its own serial and lineage unless the version moved (``StateChangedError``)."""
        with self._changed:
            stored = self._stored()
            if serial_version(stored) != expected_version:
                raise state_changed_error(self.describe(), expected_version, serial_version(stored))
            new = replace(state, format_version=SUPPORTED_FORMAT_VERSION)
            self._data = encode_state(new)
            return serial_version(new)

    def lock(self, operation: str, timeout: float) -> AbstractContextManager[LockInfo]:
        """Hold the lock for ``operation``, waiting up to ``timeout`` seconds for the holder."""
        return self._held(operation, max(0.0, float(timeout)))

    def close(self) -> None:
        """Nothing to release: every call opens and closes what it uses."""

    def lock_info(self) -> LockInfo | None:
        """The current holder, or None."""
        with self._changed:
            return self._holder

    def force_unlock(self, lock_id: str) -> None:
        """Break the lock held with ``lock_id``; ``StateError`` when nobody holds it or the ID differs."""
        with self._changed:
            holder = self._holder
            if holder is None:
                raise StateError("No lock to remove", f"The {self.describe()} is not locked. Nothing was changed.")
            if holder.id != lock_id:
                raise StateError(
                    "Lock ID does not match",
                    f"The {self.describe()} is locked with ID {holder.id}, not {lock_id}. Nothing was "
                    f"changed.\n\n{holder.describe()}",
                )
            self._holder = None
            self._changed.notify_all()

    @contextmanager
    def _held(self, operation: str, timeout: float) -> Iterator[LockInfo]:
        info = self._acquire(operation, timeout)
        try:
            yield info
        finally:
            self._release(info)

    def _acquire(self, operation: str, timeout: float) -> LockInfo:
        deadline = self._clock() + timeout
        with self._changed:
            while self._holder is not None:
                remaining = deadline - self._clock()
                if remaining <= 0:
                    raise lock_held_error(f"The {self.describe()}", self._holder, timeout)
                self._changed.wait(remaining)
            self._holder = LockInfo.new(self.describe(), operation)
            return self._holder

    def _release(self, info: LockInfo) -> None:
        with self._changed:
            # After a force-unlock the lock may be someone else's now: leave it alone.
            if self._holder is not None and self._holder.id == info.id:
                self._holder = None
                self._changed.notify_all()

    def _stored(self) -> State | None:
        return None if self._data is None else decode_state(self._data, Path(self.name))


if TYPE_CHECKING:  # mypy proves the class satisfies the protocol
    _CONFORMS: StateBackend = InMemoryBackend()
