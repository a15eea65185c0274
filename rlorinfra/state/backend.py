"""The state backend seam (DESIGN.md §4): where a state lives and how it is locked.

Everything above ``state/`` reads, writes and locks state through a
``StateBackend``; only a backend knows whether that is a local file, a
PostgreSQL row or an S3 object. Every backend passes one conformance suite
(``tests/state/test_backend_conformance.py``).
"""

from __future__ import annotations

import threading
import uuid
from contextlib import AbstractContextManager
from dataclasses import replace
from typing import Protocol

from rlorinfra.errors import StateChangedError
from rlorinfra.state.codec import SUPPORTED_FORMAT_VERSION, same_content
from rlorinfra.state.lock import LockInfo
from rlorinfra.state.model import State

# A backend's opaque token for "the stored state as I read it" (the serial for
# the local file; a row serial or an ETag elsewhere). ``None``: nothing stored yet.
Version = str | None


class StateBackend(Protocol):
    """Reads, fences writes to, and locks one state."""

    def describe(self) -> str:
        """Where the state lives, for messages (``local file prod.state.json``); never a secret."""
        ...

    def read(self) -> tuple[State, Version]:
        """The stored state (an empty ``State()`` when there is none) and its version."""
        ...

    def write(self, state: State, expected_version: Version) -> tuple[State, Version]:
        """Store ``state`` unless the stored version moved since ``expected_version`` was read.

        Returns the state as stored (serial bumped and lineage set on a content
        change; unchanged content writes nothing) and its new version. Raises
        ``StateChangedError`` when another writer got in first: nothing is written.
        """
        ...

    def write_verbatim(self, state: State, expected_version: Version) -> Version:
        """Store ``state`` with its own serial and lineage (``state push``/``migrate``), fenced like ``write``.

        Returns the new version; raises ``StateChangedError`` when the stored version
        moved since ``expected_version`` was read, and then writes nothing.
        """
        ...

    def lock(self, operation: str, timeout: float) -> AbstractContextManager[LockInfo]:
        """Hold the state lock for ``operation``, waiting up to ``timeout`` seconds.

        Raises ``StateLockedError`` naming the holder when it cannot be had.
        """
        ...

    def lock_info(self) -> LockInfo | None:
        """Who holds the lock now, or None when nobody does."""
        ...

    def close(self) -> None:
        """Release what the backend holds open (connections); reading again reopens them."""
        ...

    def force_unlock(self, lock_id: str) -> None:
        """Break the lock whose ID is ``lock_id`` (``StateError`` when the ID does not match)."""
        ...


def serial_version(stored: State | None) -> Version:
    """The version of a backend that versions by serial: the serial as a string, None when nothing is stored."""
    return None if stored is None else str(stored.serial)


def state_changed_error(where: str, expected: Version, found: Version) -> StateChangedError:
    """The error a backend raises when the stored version moved since it was read."""
    read = "no state" if expected is None else f"version {expected}"
    now = "no state" if found is None else f"version {found}"
    return StateChangedError(
        "State changed underneath this run",
        f"The state in {where} is at {now}, but this run read {read}: another rlorinfra run "
        "or a hand edit wrote it since. Nothing was written, so that change is kept. "
        "Run the command again: it reads the new state and plans against it "
        "(`rlorinfra plan` shows what differs now).",
    )


def next_state(state: State, current: State) -> State | None:
    """``state`` stored as the successor of ``current``: serial bumped, lineage kept (or new).

    None when the content is unchanged: a backend then writes nothing. One rule for
    every backend, so serial and lineage mean the same wherever the state lives.
    """
    if same_content(state, current):
        return None
    return replace(
        state,
        format_version=SUPPORTED_FORMAT_VERSION,
        serial=current.serial + 1,
        lineage=current.lineage or str(uuid.uuid4()),
    )


class FencedState:
    """One run's view of a backend's state: every write is fenced by the version last seen.

    ``read`` remembers the version it got; ``write`` passes it as the expected
    version and remembers the new one. So a run whose state was changed underneath
    it (a lock broken by ``force-unlock``, a stale process resuming) gets
    ``StateChangedError`` and writes nothing, instead of overwriting another run's
    work. Thread-safe: apply's workers write through one instance.
    """

    def __init__(self, backend: StateBackend) -> None:
        self.backend = backend
        self._version: Version = None
        self._guard = threading.Lock()

    def read(self) -> State:
        """The stored state (empty when none); later writes are fenced against this version."""
        with self._guard:
            state, self._version = self.backend.read()
            return state

    def write(self, state: State) -> State:
        """Store ``state`` if nothing moved since the last read or write; the state as stored."""
        with self._guard:
            stored, self._version = self.backend.write(state, self._version)
            return stored
